//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! The holder renews the Lease every third of its duration. A standby takes the Lease over when
//! it has not seen the record change for a whole lease duration, measured on its own clock (so
//! clock skew between machines does not matter). Writes use the Lease's `resourceVersion`, so
//! of two candidates racing for an expired Lease only one wins. A leader that cannot renew
//! stops reconciling before its Lease can expire; on shutdown it releases the Lease so that a
//! standby takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{PostParams, ResourceExt};

/// One candidate's view of the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The last record seen (holder, renew time) and when this process first saw it.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

/// The result of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This process holds the Lease.
    Leading,
    /// Another process holds it.
    Following { holder: String },
}

impl LeaseLock {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often the leader renews and a standby retries.
    pub fn retry_period(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(500))
    }

    /// Acquires, renews, or finds the Lease held by another process.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(self.following("")),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        self.observe(&holder, &spec.renew_time);

        let (acquire_time, transitions) = if holder.as_deref() == Some(&self.identity) {
            (
                spec.acquire_time.clone().unwrap_or(now.clone()),
                spec.lease_transitions.unwrap_or(0),
            )
        } else if holder.is_none() || self.expired(&spec) {
            (now.clone(), spec.lease_transitions.unwrap_or(0) + 1)
        } else {
            return Ok(self.following(holder.as_deref().unwrap_or_default()));
        };
        lease.spec = Some(self.spec(acquire_time, now, transitions));
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Ok(self.following(holder.as_deref().unwrap_or("unknown")))
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (if held), so that a standby takes over without waiting.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        self.api
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    fn spec(&self, acquire_time: MicroTime, renew_time: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire_time),
            renew_time: Some(renew_time),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn observe(&mut self, holder: &Option<String>, renew_time: &Option<MicroTime>) {
        let same = self
            .observed
            .as_ref()
            .is_some_and(|(h, r, _)| h == holder && r == renew_time);
        if !same {
            self.observed = Some((holder.clone(), renew_time.clone(), Instant::now()));
        }
    }

    /// Expired when the record has not changed for the Lease's duration on our clock.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.duration);
        self.observed
            .as_ref()
            .is_some_and(|(_, _, seen)| seen.elapsed() > duration)
    }

    fn following(&self, holder: &str) -> Attempt {
        Attempt::Following {
            holder: holder.to_string(),
        }
    }
}

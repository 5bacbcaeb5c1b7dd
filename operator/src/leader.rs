//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! The holder renews the Lease every third of its duration. A standby takes the Lease over when
//! it has not seen the record change for a whole lease duration, measured on its own clock (so
//! clock skew between machines does not matter). Writes use the Lease's `resourceVersion`, so
//! of two candidates racing for an expired Lease only one wins. A leader that cannot renew
//! stops reconciling before its Lease can expire; on shutdown it releases the Lease so that a
//! standby takes over at once.
//!
//! The decision (ours? free? expired? renew or take over?) is the pure [`decide`], fed by an
//! [`Observation`] of the record on the local clock; [`LeaseLock`] does the reads and writes.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{PostParams, ResourceExt};

/// The result of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This process holds the Lease.
    Leading,
    /// Another process holds it.
    Following { holder: String },
}

/// The Lease record as this process last saw it, and when it first saw it so (local clock).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Instant,
}

impl Observation {
    /// The observation after reading `spec` at `now`: the clock restarts only when the record
    /// (holder or renew time) changed since `previous`.
    pub fn update(previous: Option<Observation>, spec: &LeaseSpec, now: Instant) -> Observation {
        let holder = holder_of(spec).map(str::to_string);
        match previous {
            Some(seen) if seen.holder == holder && seen.renew_time == spec.renew_time => seen,
            _ => Observation {
                holder,
                renew_time: spec.renew_time.clone(),
                since: now,
            },
        }
    }
}

/// What to do with a Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew, keeping the transition count.
    Renew { transitions: i32 },
    /// Free or expired: take it over, counting one more transition.
    TakeOver { transitions: i32 },
    /// Another holder's Lease is live.
    Follow { holder: String },
}

/// Decides what `identity` does with the Lease `spec` it read at `now`, `observed` being the
/// record's observation after this read. `default_duration` counts for a Lease without its own.
pub fn decide(
    spec: &LeaseSpec,
    identity: &str,
    observed: &Observation,
    now: Instant,
    default_duration: Duration,
) -> Decision {
    let transitions = spec.lease_transitions.unwrap_or(0);
    match holder_of(spec) {
        Some(holder) if holder == identity => Decision::Renew { transitions },
        Some(holder) if !expired(spec, observed, now, default_duration) => Decision::Follow {
            holder: holder.to_string(),
        },
        _ => Decision::TakeOver {
            transitions: transitions + 1,
        },
    }
}

/// Expired when the record has not changed for longer than the Lease's duration on our clock.
pub fn expired(
    spec: &LeaseSpec,
    observed: &Observation,
    now: Instant,
    default_duration: Duration,
) -> bool {
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(default_duration);
    now.saturating_duration_since(observed.since) > duration
}

/// The holder of a Lease; an empty identity means nobody.
fn holder_of(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// One candidate's view of the Lease: the I/O around [`decide`].
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<Observation>,
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
        self.try_at(
            Instant::now(),
            MicroTime(k8s_openapi::jiff::Timestamp::now()),
        )
        .await
    }

    /// [`Self::try_acquire_or_renew`] with the clocks given: `now` to time the record, `wall`
    /// to write into it.
    pub async fn try_at(&mut self, now: Instant, wall: MicroTime) -> Result<Attempt, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(wall.clone(), wall, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(following("")),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let observed = Observation::update(self.observed.take(), &spec, now);
        let decision = decide(&spec, &self.identity, &observed, now, self.duration);
        self.observed = Some(observed);
        let (acquire_time, transitions) = match decision {
            Decision::Follow { holder } => return Ok(following(&holder)),
            Decision::Renew { transitions } => (
                spec.acquire_time.clone().unwrap_or(wall.clone()),
                transitions,
            ),
            Decision::TakeOver { transitions } => (wall.clone(), transitions),
        };
        lease.spec = Some(self.spec(acquire_time, wall, transitions));
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Ok(following(holder_of(&spec).unwrap_or("unknown")))
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
}

fn following(holder: &str) -> Attempt {
    Attempt::Following {
        holder: holder.to_string(),
    }
}

#[cfg(test)]
mod tests;

//! What happens after a failed reconcile: an invalid spec waits for a change (it is not retried
//! in a hot loop); anything else is retried with exponential backoff per object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::{Context, Error, key};
use crate::crd::ModelDeployment;

/// The longest wait between two tries.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// Consecutive failures per object (`namespace/name`).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts one more failure of `key`; returns the count and how long to wait.
    pub fn fail(&self, key: &str) -> (u32, Duration) {
        let mut failures = self.failures.lock().unwrap();
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        (*n, delay(*n))
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap().remove(key);
    }
}

/// 1s after the first failure, doubling up to 256s (never more than [`MAX_DELAY`]).
fn delay(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(9).saturating_sub(1)).min(MAX_DELAY)
}

/// What the controller does after a failed reconcile: wait for a change of an invalid spec,
/// back off exponentially on anything else.
#[tracing::instrument(
    skip_all,
    fields(namespace = %md.namespace().unwrap_or_default(), name = %md.name_any())
)]
pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.label());
    if let Error::InvalidSpec(invalid) = error {
        tracing::info!(%invalid, "invalid spec; waiting for a change");
        return Action::await_change();
    }
    let (attempts, delay) = ctx.backoff.fail(&key(&md));
    tracing::warn!(error = %error, label = error.label(), attempts, ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_one_second_and_stops_growing() {
        let delays: Vec<u64> = [1, 2, 3, 9, 10, 1000]
            .into_iter()
            .map(|n| delay(n).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 256, 256, 256]);
    }

    #[test]
    fn failures_are_counted_per_object_until_a_success() {
        let backoff = Backoff::default();
        assert_eq!(backoff.fail("ml/a"), (1, Duration::from_secs(1)));
        assert_eq!(backoff.fail("ml/a"), (2, Duration::from_secs(2)));
        assert_eq!(backoff.fail("ml/b"), (1, Duration::from_secs(1)));
        backoff.reset("ml/a");
        assert_eq!(backoff.fail("ml/a"), (1, Duration::from_secs(1)));
    }
}

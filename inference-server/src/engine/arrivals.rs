//! Requests on their way to the queue: admitted by a front end (the HTTP
//! routes) as soon as the request line and headers are in, before the body is
//! read and decoded, and settled once the job is queued or the request fails.
//!
//! The batcher reads [`Arrivals::pending`] to decide whether waiting can pay:
//! with closed-loop clients, once every admitted request is in the forming
//! batch nobody else can join it, so it runs at once; while some are still
//! being decoded, they are about to join, and it waits for them (at most the
//! batch delay). [`Arrivals::settled`] wakes a waiting batcher when one of
//! them gives up instead (a bad body, a timeout), so it never waits for a job
//! that will not come.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The count of admitted, not yet queued requests of one engine.
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Inner>);

#[derive(Default)]
struct Inner {
    pending: AtomicUsize,
    settled: Notify,
}

impl Arrivals {
    /// Counts a request in; it stays pending until its [`Admission`] settles.
    pub fn admit(&self) -> Admission {
        self.0.pending.fetch_add(1, Ordering::SeqCst);
        Admission {
            arrivals: self.clone(),
            settled: AtomicBool::new(false),
        }
    }

    /// Requests admitted and not yet queued (or failed).
    pub fn pending(&self) -> usize {
        self.0.pending.load(Ordering::SeqCst)
    }

    /// A future that completes at the next settlement. Create it, `enable` it,
    /// then check [`pending`](Self::pending), so no settlement is missed.
    pub fn settled(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.settled.notified()
    }
}

/// One admitted request. Settles when its job is queued, or when dropped.
pub struct Admission {
    arrivals: Arrivals,
    settled: AtomicBool,
}

impl Admission {
    /// The request left the way to the queue (queued, or failed); idempotent.
    pub fn settle(&self) {
        if !self.settled.swap(true, Ordering::SeqCst) {
            self.arrivals.0.pending.fetch_sub(1, Ordering::SeqCst);
            self.arrivals.0.settled.notify_waiters();
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admission_is_pending_until_it_settles_once() {
        let arrivals = Arrivals::default();
        let a = arrivals.admit();
        let b = arrivals.admit();
        assert_eq!(arrivals.pending(), 2);
        a.settle();
        a.settle();
        assert_eq!(arrivals.pending(), 1, "settling twice counts once");
        drop(a);
        assert_eq!(
            arrivals.pending(),
            1,
            "dropping a settled admission counts nothing"
        );
        drop(b);
        assert_eq!(arrivals.pending(), 0, "dropping settles");
    }

    #[tokio::test(start_paused = true)]
    async fn a_settlement_wakes_a_waiter_that_registered_first() {
        let arrivals = Arrivals::default();
        let admission = arrivals.admit();
        let notified = arrivals.settled();
        tokio::pin!(notified);
        notified.as_mut().enable();
        assert_eq!(arrivals.pending(), 1);
        admission.settle();
        tokio::time::timeout(std::time::Duration::from_secs(1), notified)
            .await
            .expect("the waiter is woken");
    }
}

//! The batching policy as one pure decision: given what the batcher knows of
//! the batch before, how may the forming batch wait once its queue is empty
//! ([`plan_wait`]). The module documentation of [`super`] explains why.

/// When a forming batch waits for more rows once its queue is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchWait {
    /// While requests the server has admitted are still on their way to the
    /// queue (read, decoded), at most `max_batch_delay`; never otherwise.
    #[default]
    Admitted,
    /// Under load (another batch running, or the last batch held more than
    /// one request), the whole `max_batch_delay`, whether or not more
    /// requests come: more rows per batch at the price of latency.
    Fixed,
}

/// What the batcher knows of the batch before this one.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Recent {
    /// Jobs in it: more than one means requests arrive faster than batches run.
    pub jobs: usize,
    /// It was full, or a job was left over for this one: the server is saturated.
    pub full: bool,
}

/// How a forming batch may wait once its queue is empty.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    RunNow,
    /// Wait for the batch to fill, up to the delay.
    Fill,
    /// Wait while admitted requests are on their way, up to the delay.
    ForArrivals {
        under_load: bool,
    },
}

/// The batching policy, as a pure decision (see the module documentation).
pub(super) fn plan_wait(
    wait: BatchWait,
    max_batch_size: usize,
    recent: Recent,
    others_busy: bool,
) -> Plan {
    if max_batch_size == 1 {
        return Plan::RunNow;
    }
    match wait {
        // Saturated: more requests than a batch holds are in flight, so the
        // batch fills quickly, and a full batch costs least per request.
        BatchWait::Admitted if recent.full => Plan::Fill,
        BatchWait::Admitted => Plan::ForArrivals {
            under_load: recent.jobs > 1,
        },
        // Under load only: with every other worker idle and the last batch a
        // lone job, the jobs already queued are all there is.
        BatchWait::Fixed if others_busy || recent.jobs > 1 => Plan::Fill,
        BatchWait::Fixed => Plan::RunNow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_waits_for_arrivals_fills_only_when_saturated_and_never_without_batching() {
        let r = |jobs, full| Recent { jobs, full };
        let admitted = |recent| plan_wait(BatchWait::Admitted, 32, recent, false);
        assert_eq!(
            admitted(r(0, false)),
            Plan::ForArrivals { under_load: false }
        );
        assert_eq!(
            admitted(r(1, false)),
            Plan::ForArrivals { under_load: false }
        );
        assert_eq!(
            admitted(r(8, false)),
            Plan::ForArrivals { under_load: true }
        );
        assert_eq!(
            admitted(r(32, true)),
            Plan::Fill,
            "a full batch before: saturated"
        );
        let fixed = |recent, busy| plan_wait(BatchWait::Fixed, 32, recent, busy);
        assert_eq!(fixed(r(1, false), false), Plan::RunNow);
        assert_eq!(fixed(r(1, false), true), Plan::Fill);
        assert_eq!(fixed(r(2, false), false), Plan::Fill);
        for wait in [BatchWait::Admitted, BatchWait::Fixed] {
            assert_eq!(
                plan_wait(wait, 1, r(5, true), true),
                Plan::RunNow,
                "batching off"
            );
        }
    }
}

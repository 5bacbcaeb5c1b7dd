//! Batches: gathering queued jobs into one ([`gather`]), and running a
//! batch on the model and answering each of its jobs ([`run_batch`]).
//!
//! Each job carries the tracing span of its request (`infer`, a child of the
//! HTTP request's span with its request id). When the job runs, its span
//! records the batch (`batch_id`, `batch_rows`), and the batch's own span
//! (`batch`) follows from every job in it, so a slow request leads to the
//! batch it ran in and a slow batch to its requests.

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;
use tracing::Span;

use super::EngineError;
use super::arrivals::Arrivals;
use crate::metrics::ModelMetrics;
use crate::runtime::{Backend, InferError};
use crate::tensor::Tensor;

/// Something the batcher can put into a batch.
pub trait Batchable {
    /// Rows it adds to a batch.
    fn rows(&self) -> usize;
    /// Whether it can share a batch with `other` (their rows stack).
    fn stacks_with(&self, other: &Self) -> bool;
}

/// One request waiting for its batch.
pub(super) struct Job {
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    pub reply: oneshot::Sender<Result<Vec<Tensor>, EngineError>>,
    /// The request's `infer` span; the batch is recorded on it.
    pub span: Span,
}

impl Batchable for Job {
    fn rows(&self) -> usize {
        self.rows
    }

    /// Jobs can share a batch when their tensors agree beyond the first dimension.
    fn stacks_with(&self, other: &Job) -> bool {
        self.inputs
            .iter()
            .zip(&other.inputs)
            .all(|(x, y)| x.shape()[1..] == y.shape()[1..])
    }
}

/// A gathered batch, and the job that did not fit (it starts the next one).
#[derive(Debug)]
pub struct Gathered<T> {
    pub jobs: Vec<T>,
    pub rows: usize,
    pub held: Option<T>,
}

/// How long [`gather`] may wait for more jobs once the queue is empty.
#[derive(Clone, Copy)]
pub enum Wait<'a> {
    /// Not at all: run what is queued.
    No,
    /// Until `deadline`, whatever comes (the fixed policy).
    Until(Instant),
    /// While requests admitted by the front end are still on their way to
    /// the queue, and at most until `deadline` (the default policy). Under
    /// load (the last batch held more than one job) it also lets the runtime
    /// read its sockets before it gives up, again as long as that brought
    /// more rows: requests already sent but not yet read are admitted then.
    /// That costs no time on the clock, only turns of the scheduler, and only
    /// when batches are forming anyway.
    ForArrivals {
        arrivals: &'a Arrivals,
        deadline: Instant,
        under_load: bool,
    },
}

/// Starts a batch with `first` and adds queued jobs while they fit in
/// `max_rows` rows and stack with `first`; once the queue is empty it waits
/// as `wait` says for more to arrive. The first job that does not fit is
/// held back, not lost. A closed channel ends the batch with what it has.
pub async fn gather<T: Batchable>(
    first: T,
    rx: &mut mpsc::Receiver<T>,
    max_rows: usize,
    wait: Wait<'_>,
) -> Gathered<T> {
    let mut rows = first.rows();
    let mut jobs = vec![first];
    // Under load: the rows when the batch last let the runtime read its sockets.
    let mut rows_at_last_look = None;
    while rows < max_rows {
        let next = match rx.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => match next_arrival(rx, wait).await {
                Arrival::Job(job) => job,
                Arrival::Again => continue,
                Arrival::None => match wait {
                    // Look again as long as looking brought more rows.
                    Wait::ForArrivals {
                        under_load: true, ..
                    } if rows_at_last_look.is_none_or(|r| r < rows) => {
                        rows_at_last_look = Some(rows);
                        // Deferred until the runtime has polled its I/O driver.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    _ => break,
                },
            },
        };
        if rows + next.rows() > max_rows || !jobs[0].stacks_with(&next) {
            return Gathered {
                jobs,
                rows,
                held: Some(next),
            };
        }
        rows += next.rows();
        jobs.push(next);
    }
    Gathered {
        jobs,
        rows,
        held: None,
    }
}

enum Arrival<T> {
    Job(T),
    /// Something changed (an admitted request gave up): look again.
    Again,
    None,
}

/// Waits on an empty queue as `wait` allows.
async fn next_arrival<T>(rx: &mut mpsc::Receiver<T>, wait: Wait<'_>) -> Arrival<T> {
    match wait {
        Wait::No => Arrival::None,
        Wait::Until(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(job)) => Arrival::Job(job),
            _ => Arrival::None,
        },
        Wait::ForArrivals {
            arrivals, deadline, ..
        } => {
            // Register for the next settlement before reading the count, so
            // one that happens in between still wakes us.
            let settled = arrivals.settled();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if arrivals.pending() == 0 || Instant::now() >= deadline {
                return Arrival::None;
            }
            tokio::select! {
                job = rx.recv() => job.map_or(Arrival::None, Arrival::Job),
                () = &mut settled => Arrival::Again,
                () = tokio::time::sleep_until(deadline) => Arrival::None,
            }
        }
    }
}

/// Runs one batch and answers its jobs. The worker's `permit` is given back
/// as soon as the model has run, before the answers go out, so that the
/// batcher never sees a finished batch as still running.
pub(super) fn run_batch(
    name: &str,
    batch_id: u64,
    backend: &dyn Backend,
    mut batch: Vec<Job>,
    rows: usize,
    metrics: &ModelMetrics,
    permit: OwnedSemaphorePermit,
) {
    batch.retain(|job| !job.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let span = tracing::debug_span!("batch", model = name, batch_id, rows, jobs = batch.len());
    for job in &batch {
        job.span.record("batch_id", batch_id);
        job.span.record("batch_rows", rows);
        span.follows_from(&job.span);
    }
    let _entered = span.enter();
    metrics.batch_size.observe(rows as f64);
    let started = std::time::Instant::now();
    if batch.len() == 1 {
        let job = batch.pop().expect("one job");
        let out = backend.infer(&job.inputs).map_err(EngineError::from);
        drop(permit);
        metrics
            .inference_seconds
            .observe(started.elapsed().as_secs_f64());
        let _ = job.reply.send(out);
        return;
    }
    let merged: Result<Vec<Tensor>, InferError> = (0..batch[0].inputs.len())
        .map(|i| {
            let parts: Vec<&Tensor> = batch.iter().map(|j| &j.inputs[i]).collect();
            Tensor::concat_rows(parts[0].name(), &parts).map_err(InferError::new)
        })
        .collect();
    let result = merged.and_then(|inputs| backend.infer(&inputs));
    drop(permit);
    metrics
        .inference_seconds
        .observe(started.elapsed().as_secs_f64());
    let outputs = match result {
        Ok(outputs) => outputs,
        Err(e) => {
            tracing::warn!(model = name, error = %e, jobs = batch.len(), "batched inference failed");
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(EngineError::Inference(InferError::new(&e))));
            }
            return;
        }
    };
    let row_counts: Vec<usize> = batch.iter().map(|j| j.rows).collect();
    let split: Result<Vec<Vec<Tensor>>, InferError> = outputs
        .iter()
        .map(|o| o.split_rows(&row_counts).map_err(InferError::new))
        .collect();
    match split {
        Ok(per_output) => {
            let mut parts: Vec<_> = per_output.into_iter().map(Vec::into_iter).collect();
            for job in batch {
                let outs = parts
                    .iter_mut()
                    .map(|p| p.next().expect("one part per job"))
                    .collect();
                let _ = job.reply.send(Ok(outs));
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(EngineError::Inference(e.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A bare job: its rows and the width its rows must share to stack.
    #[derive(Debug, PartialEq)]
    struct Rows(usize, usize);

    impl Batchable for Rows {
        fn rows(&self) -> usize {
            self.0
        }
        fn stacks_with(&self, other: &Rows) -> bool {
            self.1 == other.1
        }
    }

    async fn queue(items: Vec<Rows>) -> (mpsc::Sender<Rows>, mpsc::Receiver<Rows>) {
        let (tx, rx) = mpsc::channel(16);
        for item in items {
            tx.send(item).await.unwrap();
        }
        (tx, rx)
    }

    fn in_ms(ms: u64) -> Wait<'static> {
        Wait::Until(Instant::now() + Duration::from_millis(ms))
    }

    #[tokio::test(start_paused = true)]
    async fn takes_what_is_queued_up_to_the_row_limit_and_holds_the_rest() {
        let (_tx, mut rx) = queue(vec![Rows(2, 4), Rows(3, 4), Rows(1, 4)]).await;
        let got = gather(Rows(1, 4), &mut rx, 4, Wait::No).await;
        assert_eq!(got.jobs, vec![Rows(1, 4), Rows(2, 4)]);
        assert_eq!(got.rows, 3);
        assert_eq!(
            got.held,
            Some(Rows(3, 4)),
            "the job that overflows starts the next batch"
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            Rows(1, 4),
            "what was not looked at stays queued"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_that_does_not_stack_ends_the_batch() {
        let (_tx, mut rx) = queue(vec![Rows(1, 3), Rows(1, 4)]).await;
        let got = gather(Rows(1, 4), &mut rx, 8, Wait::No).await;
        assert_eq!(got.jobs, vec![Rows(1, 4)]);
        assert_eq!(got.held, Some(Rows(1, 3)));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_wait_an_empty_queue_ends_the_batch_at_once() {
        let (_tx, mut rx) = queue(vec![]).await;
        let started = Instant::now();
        let got = gather(Rows(1, 4), &mut rx, 8, Wait::No).await;
        assert_eq!((got.jobs.len(), got.held), (1, None));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_wait_jobs_arriving_before_the_deadline_join() {
        let (tx, mut rx) = queue(vec![]).await;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            tx.send(Rows(1, 4)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(Rows(1, 4)).await.unwrap();
        });
        let started = Instant::now();
        let got = gather(Rows(1, 4), &mut rx, 8, in_ms(5)).await;
        assert_eq!(
            got.jobs.len(),
            2,
            "the job at 3ms joins, the one at 13ms does not"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(5));
        assert_eq!(rx.recv().await, Some(Rows(1, 4)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_queue_ends_the_batch() {
        let (tx, mut rx) = queue(vec![Rows(1, 4)]).await;
        drop(tx);
        let started = Instant::now();
        let got = gather(Rows(1, 4), &mut rx, 8, in_ms(10_000)).await;
        assert_eq!((got.jobs.len(), got.held), (2, None));
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no wait on a closed queue"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_request_on_its_way_the_batch_runs_at_once() {
        let (_tx, mut rx) = queue(vec![Rows(1, 4)]).await;
        let arrivals = Arrivals::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let started = Instant::now();
        let got = gather(
            Rows(1, 4),
            &mut rx,
            8,
            Wait::ForArrivals {
                arrivals: &arrivals,
                deadline,
                under_load: false,
            },
        )
        .await;
        assert_eq!(got.jobs.len(), 2, "what is queued joins");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "nobody else can join: no wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_admitted_request_is_waited_for_until_it_is_queued() {
        let (tx, mut rx) = queue(vec![]).await;
        let arrivals = Arrivals::default();
        let admission = arrivals.admit();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            tx.send(Rows(1, 4)).await.unwrap();
            admission.settle();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let started = Instant::now();
        let got = gather(
            Rows(1, 4),
            &mut rx,
            8,
            Wait::ForArrivals {
                arrivals: &arrivals,
                deadline,
                under_load: false,
            },
        )
        .await;
        assert_eq!(got.jobs.len(), 2, "the admitted request joins");
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(3),
            "and the batch runs as soon as it is in, not at the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_admitted_request_that_gives_up_ends_the_wait() {
        let (_tx, mut rx) = queue(vec![]).await;
        let arrivals = Arrivals::default();
        let admission = arrivals.admit();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(admission); // e.g. its body did not decode
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let started = Instant::now();
        let got = gather(
            Rows(1, 4),
            &mut rx,
            8,
            Wait::ForArrivals {
                arrivals: &arrivals,
                deadline,
                under_load: false,
            },
        )
        .await;
        assert_eq!(got.jobs.len(), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_arrives_is_waited_for_until_the_deadline_only() {
        let (_tx, mut rx) = queue(vec![]).await;
        let arrivals = Arrivals::default();
        let _slow_upload = arrivals.admit();
        let deadline = Instant::now() + Duration::from_millis(1);
        let started = Instant::now();
        let got = gather(
            Rows(1, 4),
            &mut rx,
            8,
            Wait::ForArrivals {
                arrivals: &arrivals,
                deadline,
                under_load: false,
            },
        )
        .await;
        assert_eq!(got.jobs.len(), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(1));
    }

    /// A request that is sent but not yet read: a task that is ready to run.
    async fn gather_with_one_ready_sender(under_load: bool) -> usize {
        let (tx, mut rx) = queue(vec![]).await;
        tokio::spawn(async move { tx.send(Rows(1, 4)).await.unwrap() });
        let arrivals = Arrivals::default();
        let wait = Wait::ForArrivals {
            arrivals: &arrivals,
            deadline: Instant::now() + Duration::from_secs(10),
            under_load,
        };
        let started = Instant::now();
        let got = gather(Rows(1, 4), &mut rx, 8, wait).await;
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "looking again costs no time"
        );
        got.jobs.len()
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn under_load_the_batch_lets_ready_requests_in_before_it_runs() {
        assert_eq!(gather_with_one_ready_sender(true).await, 2);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn without_load_the_batch_runs_without_looking_again() {
        assert_eq!(gather_with_one_ready_sender(false).await, 1);
    }
}

//! The serving engine of one model: validation against the signature, a
//! bounded queue, and dynamic batching.
//!
//! A batcher task takes the first queued job, gathers whatever else is
//! queued up to `max_batch_size` rows, runs the batch once on a blocking
//! thread and answers each caller on its own oneshot channel. While every
//! worker is busy, jobs pile up in the queue, so batches grow with load by
//! themselves. A full queue is refused at once: memory never grows without
//! bound.
//!
//! When to wait for more ([`BatchWait`]): waiting while a worker is idle is
//! lost time unless more requests are about to join. The server knows which
//! are: the front ends admit each request when it arrives, before its body is
//! read and decoded ([`Engine::admit`], [`arrivals`]). So by default a batch
//! whose queue is empty waits only while admitted requests are still on their
//! way, at most `max_batch_delay`; with none on the way it runs at once. With
//! closed-loop clients that is exact: once every admitted request is in the
//! batch, nobody else can join it. A lone request never waits. Under load
//! (the last batch held several jobs) it also lets the runtime read its
//! sockets before it runs, as long as that brings more rows. Saturated (the
//! last batch was full, or left a job over), it waits for the batch to fill,
//! up to the delay: more requests than a batch holds are in flight then, so
//! the wait is short and a full batch costs least per request. The fixed
//! policy (the one before) waits the whole delay under load instead.
//!
//! [`validate`] holds the checks a request passes before it is queued,
//! [`batch`] the gathering and running of one batch.

pub mod arrivals;
pub mod batch;
mod policy;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::metrics::ModelMetrics;
use crate::protocol::BadRequest;
use crate::runtime::{Backend, InferError};
use crate::tensor::{ModelSignature, Tensor};
pub use arrivals::{Admission, Arrivals};
use batch::{Gathered, Job, Wait, gather, run_batch};
pub use policy::BatchWait;
use policy::{Plan, Recent, plan_wait};
pub use validate::{check_outputs, prepare_inputs, warm_up_inputs};

/// How a model's requests are queued and batched.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most rows in one batch; 1 turns batching off.
    pub max_batch_size: usize,
    /// Longest a batch waits for more rows once its queue is empty (see
    /// [`BatchWait`] for when it waits at all).
    pub max_batch_delay: Duration,
    /// When a batch waits for more rows.
    pub wait: BatchWait,
    /// Jobs that may wait in the queue before new ones are refused.
    pub max_queue: usize,
    /// Batches that may run at the same time.
    pub workers: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch_size: 32,
            max_batch_delay: Duration::from_millis(1),
            wait: BatchWait::Admitted,
            max_queue: 1024,
            workers: crate::runtime::threads(0),
        }
    }
}

/// Why a job did not produce outputs.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    BadRequest(#[from] BadRequest),
    #[error("the queue of model '{0}' is full; retry later")]
    QueueFull(String),
    #[error("model '{0}' is shutting down")]
    ShuttingDown(String),
    #[error("inference failed: {0}")]
    Inference(#[from] InferError),
}

/// A handle to a running engine: cheap to clone, shared by all requests.
#[derive(Clone)]
pub struct Engine {
    name: Arc<str>,
    signature: Arc<ModelSignature>,
    tx: mpsc::Sender<Job>,
    arrivals: Arrivals,
    metrics: ModelMetrics,
}

impl Engine {
    /// Starts the batcher task for `backend`. Batching is used only when the
    /// model's first dimension is dynamic on every input and output.
    pub fn start(
        name: &str,
        backend: Arc<dyn Backend>,
        mut config: EngineConfig,
        metrics: ModelMetrics,
    ) -> Engine {
        let signature = Arc::new(backend.signature().clone());
        if !signature.supports_batching() {
            config.max_batch_size = 1;
        }
        config.max_batch_size = config.max_batch_size.max(1);
        config.workers = config.workers.max(1);
        let (tx, rx) = mpsc::channel(config.max_queue.max(1));
        let name: Arc<str> = Arc::from(name);
        let arrivals = Arrivals::default();
        tokio::spawn(batcher(
            name.clone(),
            backend,
            config,
            rx,
            arrivals.clone(),
            metrics.clone(),
        ));
        Engine {
            name,
            signature,
            tx,
            arrivals,
            metrics,
        }
    }

    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// Checks `inputs` against the signature and orders them as the model
    /// declares: every input exactly once, right datatype and shape, at
    /// least one row.
    pub fn prepare(&self, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, usize), BadRequest> {
        prepare_inputs(&self.signature, inputs)
    }

    /// Checks that the model has every output named in `requested`.
    pub fn check_outputs<'a>(
        &self,
        requested: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), BadRequest> {
        check_outputs(&self.signature, requested)
    }

    /// Counts a request in as soon as it arrives, before its body is read:
    /// a forming batch waits for admitted requests (module documentation).
    pub fn admit(&self) -> Admission {
        self.arrivals.admit()
    }

    /// Validates, queues and waits for the outputs of one admitted request.
    /// Outputs come in signature order. The admission settles once the job
    /// is queued (or refused).
    pub async fn infer(
        &self,
        admission: Admission,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, EngineError> {
        let (inputs, rows) = self.prepare(inputs)?;
        let (reply, rx) = oneshot::channel();
        // A child of the caller's span (the HTTP request's, with its id);
        // the batch it runs in is recorded on it.
        let span = tracing::debug_span!(
            "infer",
            model = %self.name,
            rows,
            batch_id = tracing::field::Empty,
            batch_rows = tracing::field::Empty,
        );
        let sent = self.tx.try_send(Job {
            inputs,
            rows,
            reply,
            span,
        });
        // Queued (or refused): no longer on its way. After the send, so that a
        // batcher never sees it neither pending nor queued.
        admission.settle();
        sent.map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EngineError::QueueFull(self.name.to_string()),
            mpsc::error::TrySendError::Closed(_) => {
                EngineError::ShuttingDown(self.name.to_string())
            }
        })?;
        self.metrics.queue_depth.inc();
        rx.await
            .unwrap_or_else(|_| Err(EngineError::ShuttingDown(self.name.to_string())))
    }
}

async fn batcher(
    name: Arc<str>,
    backend: Arc<dyn Backend>,
    config: EngineConfig,
    mut rx: mpsc::Receiver<Job>,
    arrivals: Arrivals,
    metrics: ModelMetrics,
) {
    let workers = Arc::new(Semaphore::new(config.workers));
    let mut held: Option<Job> = None;
    let mut recent = Recent::default();
    // Numbers batches for the traces, from 1.
    let mut batch_id = 0u64;
    loop {
        let Ok(permit) = workers.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let deadline = Instant::now() + config.max_batch_delay;
        let others_busy = workers.available_permits() + 1 < config.workers;
        let wait = match plan_wait(config.wait, config.max_batch_size, recent, others_busy) {
            Plan::RunNow => Wait::No,
            Plan::Fill => Wait::Until(deadline),
            Plan::ForArrivals { under_load } => Wait::ForArrivals {
                arrivals: &arrivals,
                deadline,
                under_load,
            },
        };
        let Gathered {
            jobs: batch,
            rows,
            held: next,
        } = gather(first, &mut rx, config.max_batch_size, wait).await;
        recent = Recent {
            jobs: batch.len(),
            full: rows >= config.max_batch_size || next.is_some(),
        };
        held = next;
        metrics.queue_depth.dec_by(batch.len() as i64);
        let backend = backend.clone();
        let metrics = metrics.clone();
        let name = name.clone();
        batch_id += 1;
        tokio::task::spawn_blocking(move || {
            run_batch(
                &name,
                batch_id,
                backend.as_ref(),
                batch,
                rows,
                &metrics,
                permit,
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DataType, TensorData, TensorSpec};
    use std::sync::Mutex;

    /// A tiny real model: `y = 2x` row by row; records the batch sizes it saw.
    struct Doubler {
        signature: ModelSignature,
        batches: Mutex<Vec<usize>>,
        delay: Duration,
    }

    impl Doubler {
        fn new(delay: Duration) -> Arc<Doubler> {
            let spec = |name: &str| TensorSpec {
                name: name.into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 2],
            };
            Arc::new(Doubler {
                signature: ModelSignature {
                    inputs: vec![spec("x")],
                    outputs: vec![spec("y")],
                },
                batches: Mutex::new(Vec::new()),
                delay,
            })
        }
    }

    impl Backend for Doubler {
        fn signature(&self) -> &ModelSignature {
            &self.signature
        }
        fn platform(&self) -> &'static str {
            "test"
        }
        fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, InferError> {
            std::thread::sleep(self.delay);
            self.batches.lock().unwrap().push(inputs[0].shape()[0]);
            let TensorData::Fp32(v) = inputs[0].data() else {
                return Err(InferError::new("expected FP32"));
            };
            let data = TensorData::Fp32(v.iter().map(|x| x * 2.0).collect());
            Ok(vec![
                Tensor::new("y", inputs[0].shape().to_vec(), data).map_err(InferError::new)?,
            ])
        }
    }

    fn row(i: usize) -> Vec<Tensor> {
        vec![
            Tensor::new(
                "x",
                vec![1, 2],
                TensorData::Fp32(vec![i as f32, -(i as f32)]),
            )
            .unwrap(),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_batched_and_each_gets_its_own_rows() {
        let backend = Doubler::new(Duration::from_millis(20));
        let config = EngineConfig {
            max_batch_size: 8,
            max_batch_delay: Duration::from_millis(50),
            wait: BatchWait::Admitted,
            max_queue: 64,
            workers: 1,
        };
        let engine = Engine::start("m", backend.clone(), config, ModelMetrics::detached());
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let engine = engine.clone();
                tokio::spawn(async move { (i, engine.infer(engine.admit(), row(i)).await) })
            })
            .collect();
        for t in tasks {
            let (i, out) = t.await.unwrap();
            let out = out.unwrap();
            assert_eq!(out[0].shape(), [1, 2]);
            assert_eq!(
                *out[0].data(),
                TensorData::Fp32(vec![2.0 * i as f32, -2.0 * i as f32])
            );
        }
        let batches = backend.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 16);
        assert!(batches.iter().all(|&b| b <= 8), "{batches:?}");
        assert!(
            batches.iter().any(|&b| b > 1),
            "no batching happened: {batches:?}"
        );
    }

    /// Paused time advances only through timers, so a batcher that waited
    /// for company would show the whole delay on the clock.
    #[tokio::test(start_paused = true)]
    async fn an_idle_engine_runs_a_lone_request_without_waiting_for_a_batch() {
        let backend = Doubler::new(Duration::ZERO);
        let config = EngineConfig {
            max_batch_size: 8,
            max_batch_delay: Duration::from_secs(10),
            wait: BatchWait::Admitted,
            max_queue: 64,
            workers: 2,
        };
        let engine = Engine::start("m", backend.clone(), config, ModelMetrics::detached());
        for i in 0..3 {
            let started = tokio::time::Instant::now();
            let out = engine.infer(engine.admit(), row(i)).await.unwrap();
            assert_eq!(
                *out[0].data(),
                TensorData::Fp32(vec![2.0 * i as f32, -2.0 * i as f32])
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a lone request waited {:?} for a batch",
                started.elapsed()
            );
        }
        assert_eq!(*backend.batches.lock().unwrap(), vec![1, 1, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_at_once() {
        let backend = Doubler::new(Duration::from_millis(200));
        let config = EngineConfig {
            max_batch_size: 1,
            max_batch_delay: Duration::ZERO,
            wait: BatchWait::Admitted,
            max_queue: 2,
            workers: 1,
        };
        let engine = Engine::start("m", backend, config, ModelMetrics::detached());
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.infer(engine.admit(), row(i)).await })
            })
            .collect();
        let mut full = 0;
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(EngineError::QueueFull(_)) => full += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(full >= 1, "expected some refusals, ok={ok}");
        assert!(ok >= 2, "expected some successes, full={full}");
    }

    /// Collects the values recorded on `infer` spans after they were created.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<(String, String)>>>);

    impl tracing::field::Visit for Recorded {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let value = format!("{value:?}");
            self.0
                .lock()
                .unwrap()
                .push((field.name().to_string(), value));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
        fn on_record(
            &self,
            _span: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            values.record(&mut self.clone());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_request_span_records_the_batch_it_ran_in() {
        use tracing_subscriber::layer::SubscriberExt;
        let recorded = Recorded::default();
        let subscriber = tracing_subscriber::registry()
            .with(recorded.clone())
            .with(tracing_subscriber::filter::LevelFilter::DEBUG);
        let _guard = tracing::subscriber::set_default(subscriber);
        let engine = Engine::start(
            "m",
            Doubler::new(Duration::ZERO),
            EngineConfig::default(),
            ModelMetrics::detached(),
        );
        engine.infer(engine.admit(), row(1)).await.unwrap();
        engine.infer(engine.admit(), row(2)).await.unwrap();
        let got = recorded.0.lock().unwrap().clone();
        let pairs = |id: &str| {
            vec![
                ("batch_id".to_string(), id.to_string()),
                ("batch_rows".to_string(), "1".to_string()),
            ]
        };
        assert_eq!(got, [pairs("1"), pairs("2")].concat());
    }

    /// Closed-loop clients on a paused clock: each sends its next request as
    /// soon as it has its answer. Returns the batch sizes and the time taken.
    async fn closed_loop(wait: BatchWait, clients: usize, rounds: usize) -> (Vec<usize>, Duration) {
        let backend = Doubler::new(Duration::ZERO);
        let config = EngineConfig {
            max_batch_size: 32,
            max_batch_delay: Duration::from_millis(1),
            wait,
            max_queue: 64,
            workers: 1,
        };
        let engine = Engine::start("m", backend.clone(), config, ModelMetrics::detached());
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    for r in 0..rounds {
                        let i = c * rounds + r;
                        let out = engine.infer(engine.admit(), row(i)).await.unwrap();
                        assert_eq!(
                            *out[0].data(),
                            TensorData::Fp32(vec![2.0 * i as f32, -2.0 * i as f32])
                        );
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let batches = backend.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), clients * rounds);
        (batches, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_clients_fewer_than_the_batch_never_wait_for_the_delay() {
        // 8 clients, batches of up to 32: every batch holds all that can come.
        let (batches, took) = closed_loop(BatchWait::Admitted, 8, 20).await;
        assert_eq!(
            took,
            Duration::ZERO,
            "a batch waited for requests that could not come: {batches:?}"
        );
        assert!(
            batches.iter().any(|&b| b > 1),
            "requests queued together share a batch: {batches:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_fixed_policy_waits_the_delay_under_load() {
        // The policy before, kept behind --batch-wait fixed: the same load
        // pays the whole delay on most batches.
        let (_, took) = closed_loop(BatchWait::Fixed, 8, 20).await;
        assert!(took >= Duration::from_millis(10), "took {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_admitted_request_still_being_decoded_joins_the_batch() {
        let backend = Doubler::new(Duration::ZERO);
        let engine = Engine::start(
            "m",
            backend.clone(),
            EngineConfig {
                workers: 1,
                max_batch_delay: Duration::from_millis(10),
                ..EngineConfig::default()
            },
            ModelMetrics::detached(),
        );
        let late = engine.admit();
        let early = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.infer(engine.admit(), row(1)).await })
        };
        // The second request's body takes 3 ms to arrive and decode (tokio's
        // timers count whole milliseconds).
        tokio::time::sleep(Duration::from_millis(3)).await;
        let out = engine.infer(late, row(2)).await.unwrap();
        assert_eq!(*out[0].data(), TensorData::Fp32(vec![4.0, -4.0]));
        early.await.unwrap().unwrap();
        assert_eq!(
            *backend.batches.lock().unwrap(),
            vec![2],
            "one batch of both"
        );
    }
}

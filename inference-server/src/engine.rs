//! The serving engine of one model: validation against the signature, a
//! bounded queue, and dynamic batching.
//!
//! A batcher task takes the first queued job, gathers whatever else is
//! queued up to `max_batch_size` rows, runs the batch once on a blocking
//! thread and answers each caller on its own oneshot channel. Under load
//! (another batch running, or the last batch held more than one job) it
//! also waits, at most `max_batch_delay`, for more jobs to fill the batch;
//! without load it runs what it has at once, so a lone request never pays
//! the delay. While every worker is busy, jobs pile up in the queue, so
//! batches grow with load by themselves. A full queue is refused at once:
//! memory never grows without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::backend::{Backend, InferError};
use crate::metrics::ModelMetrics;
use crate::protocol::BadRequest;
use crate::tensor::{ModelSignature, Tensor};

/// How a model's requests are queued and batched.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most rows in one batch; 1 turns batching off.
    pub max_batch_size: usize,
    /// Longest a batch waits for more rows once it has its first job, under
    /// load only (see the module documentation).
    pub max_batch_delay: Duration,
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
            max_queue: 1024,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
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

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: oneshot::Sender<Result<Vec<Tensor>, EngineError>>,
}

/// A handle to a running engine: cheap to clone, shared by all requests.
#[derive(Clone)]
pub struct Engine {
    name: Arc<str>,
    signature: Arc<ModelSignature>,
    tx: mpsc::Sender<Job>,
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
        tokio::spawn(batcher(name.clone(), backend, config, rx, metrics.clone()));
        Engine {
            name,
            signature,
            tx,
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

    /// Validates, queues and waits for the outputs of one request. Outputs
    /// come in signature order.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let (inputs, rows) = self.prepare(inputs)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job {
                inputs,
                rows,
                reply,
            })
            .map_err(|e| match e {
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

/// Validates request tensors against a signature; returns them in signature
/// order with the row count.
pub fn prepare_inputs(
    signature: &ModelSignature,
    mut inputs: Vec<Tensor>,
) -> Result<(Vec<Tensor>, usize), BadRequest> {
    for t in &inputs {
        if !signature.inputs.iter().any(|s| s.name == t.name) {
            let names: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(BadRequest::new(format!(
                "input '{}': the model has no such input (inputs: {})",
                t.name,
                names.join(", ")
            )));
        }
    }
    let mut ordered = Vec::with_capacity(signature.inputs.len());
    for spec in &signature.inputs {
        let pos = inputs
            .iter()
            .position(|t| t.name == spec.name)
            .ok_or_else(|| BadRequest::new(format!("input '{}': missing", spec.name)))?;
        let t = inputs.swap_remove(pos);
        if inputs.iter().any(|o| o.name == spec.name) {
            return Err(BadRequest::new(format!(
                "input '{}': given more than once",
                spec.name
            )));
        }
        if t.datatype() != spec.datatype {
            return Err(BadRequest::new(format!(
                "input '{}': expected datatype {}, got {}",
                spec.name,
                spec.datatype,
                t.datatype()
            )));
        }
        if !spec.accepts_shape(&t.shape) {
            return Err(BadRequest::new(format!(
                "input '{}': shape {:?} does not match the model's {:?} (-1 = any size)",
                spec.name, t.shape, spec.shape
            )));
        }
        ordered.push(t);
    }
    let rows = ordered[0].shape.first().copied().unwrap_or(1);
    if signature.supports_batching() {
        if rows == 0 {
            return Err(BadRequest::new(format!(
                "input '{}': the batch is empty (first dimension is 0)",
                ordered[0].name
            )));
        }
        if let Some(t) = ordered.iter().find(|t| t.shape[0] != rows) {
            return Err(BadRequest::new(format!(
                "input '{}': has {} rows but input '{}' has {rows}",
                t.name, t.shape[0], ordered[0].name
            )));
        }
    }
    if let Some(t) = ordered.iter().find(|t| t.data.is_empty()) {
        return Err(BadRequest::new(format!(
            "input '{}': has no values",
            t.name
        )));
    }
    Ok((ordered, rows))
}

async fn batcher(
    name: Arc<str>,
    backend: Arc<dyn Backend>,
    config: EngineConfig,
    mut rx: mpsc::Receiver<Job>,
    metrics: ModelMetrics,
) {
    let workers = Arc::new(Semaphore::new(config.workers));
    let mut held: Option<Job> = None;
    // Jobs in the batch before this one: more than one means requests are
    // arriving faster than batches run.
    let mut last_jobs = 0;
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
        let mut batch = vec![first];
        let mut rows = batch[0].rows;
        if config.max_batch_size > 1 {
            // Waiting for company pays only under load: with every other
            // worker idle and the last batch a lone job, the jobs already
            // queued are all there is.
            let others_busy = workers.available_permits() + 1 < config.workers;
            let wait = if others_busy || last_jobs > 1 {
                config.max_batch_delay
            } else {
                Duration::ZERO
            };
            let deadline = Instant::now() + wait;
            while rows < config.max_batch_size {
                let next = match rx.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match tokio::time::timeout(left, rx.recv()).await {
                            Ok(Some(job)) => job,
                            _ => break,
                        }
                    }
                };
                if rows + next.rows > config.max_batch_size || !stackable(&batch[0], &next) {
                    held = Some(next);
                    break;
                }
                rows += next.rows;
                batch.push(next);
            }
        }
        last_jobs = batch.len();
        metrics.queue_depth.dec_by(batch.len() as i64);
        let backend = backend.clone();
        let metrics = metrics.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            run_batch(&name, backend.as_ref(), batch, rows, &metrics, permit);
        });
    }
}

/// Jobs can share a batch when their tensors agree beyond the first dimension.
fn stackable(a: &Job, b: &Job) -> bool {
    a.inputs
        .iter()
        .zip(&b.inputs)
        .all(|(x, y)| x.shape[1..] == y.shape[1..])
}

/// Runs one batch and answers its jobs. The worker's `permit` is given back
/// as soon as the model has run, before the answers go out, so that the
/// batcher never sees a finished batch as still running.
fn run_batch(
    name: &str,
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
    metrics.batch_size.observe(rows as f64);
    let started = Instant::now();
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
            Tensor::concat_rows(&parts[0].name, &parts).map_err(InferError::new)
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
            self.batches.lock().unwrap().push(inputs[0].shape[0]);
            let TensorData::Fp32(v) = &inputs[0].data else {
                return Err(InferError::new("expected FP32"));
            };
            let data = TensorData::Fp32(v.iter().map(|x| x * 2.0).collect());
            Ok(vec![
                Tensor::new("y", inputs[0].shape.clone(), data).map_err(InferError::new)?,
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
            max_queue: 64,
            workers: 1,
        };
        let engine = Engine::start("m", backend.clone(), config, ModelMetrics::detached());
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let engine = engine.clone();
                tokio::spawn(async move { (i, engine.infer(row(i)).await) })
            })
            .collect();
        for t in tasks {
            let (i, out) = t.await.unwrap();
            let out = out.unwrap();
            assert_eq!(out[0].shape, vec![1, 2]);
            assert_eq!(
                out[0].data,
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
            max_queue: 64,
            workers: 2,
        };
        let engine = Engine::start("m", backend.clone(), config, ModelMetrics::detached());
        for i in 0..3 {
            let started = tokio::time::Instant::now();
            let out = engine.infer(row(i)).await.unwrap();
            assert_eq!(
                out[0].data,
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
            max_queue: 2,
            workers: 1,
        };
        let engine = Engine::start("m", backend, config, ModelMetrics::detached());
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.infer(row(i)).await })
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

    #[test]
    fn prepare_checks_names_datatypes_shapes_and_rows() {
        let sig = Doubler::new(Duration::ZERO).signature.clone();
        let bad_name = vec![Tensor::new("z", vec![1, 2], TensorData::Fp32(vec![0.0; 2])).unwrap()];
        assert!(
            prepare_inputs(&sig, bad_name)
                .unwrap_err()
                .0
                .contains("input 'z': the model has no such input")
        );
        let bad_type = vec![Tensor::new("x", vec![1, 2], TensorData::Int64(vec![0; 2])).unwrap()];
        assert!(
            prepare_inputs(&sig, bad_type)
                .unwrap_err()
                .0
                .contains("expected datatype FP32, got INT64")
        );
        let bad_shape = vec![Tensor::new("x", vec![1, 3], TensorData::Fp32(vec![0.0; 3])).unwrap()];
        assert!(
            prepare_inputs(&sig, bad_shape)
                .unwrap_err()
                .0
                .contains("shape [1, 3]")
        );
        let empty = vec![Tensor::new("x", vec![0, 2], TensorData::Fp32(vec![])).unwrap()];
        assert!(
            prepare_inputs(&sig, empty)
                .unwrap_err()
                .0
                .contains("batch is empty")
        );
        assert!(
            prepare_inputs(&sig, vec![])
                .unwrap_err()
                .0
                .contains("input 'x': missing")
        );
        let (ok, rows) = prepare_inputs(&sig, row(3)).unwrap();
        assert_eq!((ok.len(), rows), (1, 1));
    }
}

//! Watching a model at work: the server's inference id (`id`), payload
//! logging as CloudEvents (`event`, `sink`: a bounded queue, never in the
//! request's way), ground-truth feedback (`feedback`: the store of recent
//! answers and the items), live quality metrics, drift against the card's
//! training baseline (`drift`), the page's recent traffic (`timeline`) and
//! its figures across replicas from Prometheus (`prometheus`).
//!
//! [`Monitor`] is the process's (ids, the payload log, settings);
//! [`ModelMonitor`] is one served model's. The routes call
//! [`ModelMonitor::begin`] before the engine runs and
//! [`ModelMonitor::record`] after it answered: the first copies the inputs
//! only when the inference is sampled for logging and the queue has room for
//! its events (else they are counted dropped at once), and bins them for
//! drift; the second counts, keeps the answer for feedback and enqueues events.
//! docs/monitoring.md is the user's view.

pub mod config;
pub mod drift;
pub mod event;
pub mod feedback;
mod http_sink;
pub mod id;
pub mod prometheus;
mod score;
pub mod sink;
pub mod summary;
pub mod task;
pub mod timeline;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::metrics::{Metrics, MonitorFamilies, QualityLabels};
use crate::model::ModelCard;
use crate::tensor::{ModelSignature, Tensor};
pub use config::{Identity, LogMode, MonitorArgs};
use drift::Drift;
use event::{Body, Context, Event, Kind};
use feedback::{Predicted, Store};
use sink::{PayloadLog, Target};
pub use task::Task;
use task::input_features;
pub use wire::{grpc_parameter, grpc_response};

/// The response header (and gRPC metadata key) carrying the inference id.
pub const INFERENCE_ID_HEADER: &str = "x-modelship-inference-id";
/// The v2 response parameter carrying it.
pub const INFERENCE_ID_PARAMETER: &str = "modelship_inference_id";

/// The process's monitoring: ids, the payload log, the settings.
pub struct Monitor {
    ids: id::IdMaker,
    pub log: Option<Arc<PayloadLog>>,
    pub args: MonitorArgs,
    pub identity: Identity,
    metrics: MonitorFamilies,
    /// For forwarding feedback to the pod that made an id, and for Prometheus.
    pub client: reqwest::Client,
}

impl Monitor {
    /// Starts monitoring (the payload log's task, when one is configured).
    pub fn start(
        args: &MonitorArgs,
        identity: Identity,
        metrics: &Metrics,
    ) -> Result<Arc<Monitor>, String> {
        let log = match &args.payload_log {
            Some(url) => Some(PayloadLog::start(
                Target::parse(url)?,
                args,
                &identity.pod,
                metrics.monitor.clone(),
            )),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok(Arc::new(Monitor {
            ids: id::IdMaker::new(identity.addr),
            log,
            args: args.clone(),
            identity,
            metrics: metrics.monitor.clone(),
            client,
        }))
    }

    /// Whether an id was made by another pod that this one can forward to.
    pub fn owner_elsewhere(&self, inference_id: &str) -> Option<std::net::SocketAddr> {
        let pod = id::parse(inference_id)?.pod?;
        (Some(pod) != self.identity.addr).then_some(pod)
    }

    /// Flushes the payload log within `timeout`.
    pub async fn close(&self, timeout: Duration) {
        if let Some(log) = &self.log {
            log.close(timeout).await;
        }
    }

    /// One model's monitor.
    pub fn for_model(
        self: &Arc<Self>,
        name: &str,
        version: Option<&str>,
        signature: &ModelSignature,
        card: Option<&ModelCard>,
    ) -> ModelMonitor {
        let labels = QualityLabels {
            model: name.to_string(),
            version: version.unwrap_or("").to_string(),
        };
        let task = Task::of(signature, card, &labels, &self.metrics);
        let n_classes = match &task {
            Task::Classifier { classes, .. } => classes.len(),
            _ => 0,
        };
        let drift = match card.and_then(|c| c.baseline.as_ref()) {
            None => Err("the model card has no training baseline".to_string()),
            Some(b) => match input_features(signature) {
                None => Err("drift needs one [-1, F] FP32 or FP64 input".to_string()),
                Some(f) => {
                    let names = match &task {
                        Task::Classifier { classes, .. } => classes.clone(),
                        _ => Vec::new(),
                    };
                    Drift::new(
                        b,
                        f,
                        n_classes,
                        self.args.drift_window,
                        &labels,
                        &names,
                        &self.metrics,
                    )
                }
            },
        };
        if let Err(why) = &drift {
            tracing::info!(model = name, "no drift figures: {why}");
        }
        let ctx = Arc::new(Context {
            source: format!(
                "/modelship/{}/{name}/{}",
                self.identity.namespace, self.identity.pod
            ),
            model: name.to_string(),
            version: version.map(str::to_string),
            namespace: self.identity.namespace.clone(),
            variant: self.identity.variant.clone(),
        });
        ModelMonitor {
            store: Mutex::new(Store::new(
                self.args.feedback_window.as_millis() as u64,
                self.args.feedback_max_entries,
                self.ids.token(),
            )),
            monitor: self.clone(),
            task,
            drift,
            timeline: timeline::Timeline::default(),
            ctx,
            labels,
            stats: Mutex::new(Stats::default()),
        }
    }
}

/// The pod's own feedback figures, for the page.
#[derive(Default, Clone, serde::Serialize)]
pub struct Stats {
    pub rows: u64,
    pub correct: u64,
    pub abs_error_sum: f64,
    pub abs_error_rows: u64,
    pub items: std::collections::BTreeMap<&'static str, u64>,
}

/// One served model's monitoring.
pub struct ModelMonitor {
    monitor: Arc<Monitor>,
    pub task: Task,
    pub drift: Result<Drift, String>,
    store: Mutex<Store>,
    pub timeline: timeline::Timeline,
    ctx: Arc<Context>,
    labels: QualityLabels,
    stats: Mutex<Stats>,
}

/// What [`ModelMonitor::begin`] keeps for [`ModelMonitor::record`].
pub struct Pending {
    logged: bool,
    client_id: Option<String>,
    inputs: Option<Vec<Tensor>>,
    bins: Option<Vec<u16>>,
}

impl ModelMonitor {
    /// A monitor of its own (no payload log, metrics registered nowhere):
    /// for tests and tools that build a served model by hand.
    pub fn detached(signature: &ModelSignature, card: Option<&ModelCard>) -> ModelMonitor {
        let monitor = Monitor::start(
            &MonitorArgs::default(),
            Identity::from_env(0, "primary"),
            &Metrics::new(),
        )
        .expect("a monitor without a payload log starts");
        monitor.for_model("detached", None, signature, card)
    }

    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Before the engine runs: decides sampling, copies the inputs when they
    /// are to be logged and the queue has room, bins them for drift.
    pub fn begin(&self, client_id: Option<&str>, inputs: &[Tensor]) -> Pending {
        let log = self.monitor.log.as_ref();
        let logged = log.is_some_and(|l| l.sampled() && l.admit());
        let log_inputs = logged && log.is_some_and(|l| l.mode.requests());
        let bins = match (&self.drift, inputs) {
            (Ok(d), [input]) => d.bins(input),
            _ => None,
        };
        Pending {
            logged,
            client_id: client_id.filter(|_| log_inputs).map(str::to_string),
            inputs: log_inputs.then(|| inputs.to_vec()),
            bins,
        }
    }

    /// A new inference id.
    pub fn next_id(&self) -> String {
        self.monitor.ids.next()
    }

    /// After the engine answered: counts predictions and drift, keeps the
    /// answer for feedback, enqueues the events.
    pub fn record(
        &self,
        pending: Pending,
        inference_id: &str,
        client_id: &str,
        outputs: Vec<Tensor>,
    ) {
        let predicted = self.task.predicted(&outputs);
        let classes: &[u32] = match &predicted {
            Some(Predicted::Classes(c)) => c,
            _ => &[],
        };
        if let Task::Classifier {
            predictions, other, ..
        } = &self.task
        {
            for &c in classes {
                predictions.get(c as usize).unwrap_or(other).inc();
            }
        }
        if let (Ok(drift), Some(bins)) = (&self.drift, &pending.bins) {
            drift.record(bins, classes);
        }
        if let Some(p) = predicted {
            self.store.lock().expect("feedback store lock").insert(
                inference_id.to_string(),
                p,
                id::now_ms(),
            );
        }
        let Some(log) = self.monitor.log.as_ref().filter(|_| pending.logged) else {
            return;
        };
        let now = SystemTime::now();
        if let Some(inputs) = pending.inputs {
            log.send(self.event(
                Kind::Request,
                format!("{inference_id}.request"),
                Some(inference_id),
                now,
                Body::Request {
                    client_id: pending.client_id,
                    inputs,
                },
            ));
        }
        if log.mode.responses() {
            log.send(self.event(
                Kind::Response,
                format!("{inference_id}.response"),
                Some(inference_id),
                now,
                Body::Response {
                    client_id: client_id.to_string(),
                    outputs,
                },
            ));
        }
    }

    fn event(
        &self,
        kind: Kind,
        ce_id: String,
        inference_id: Option<&str>,
        time: SystemTime,
        body: Body,
    ) -> Event {
        Event {
            kind,
            ce_id,
            inference_id: inference_id.map(str::to_string),
            time,
            ctx: self.ctx.clone(),
            body,
        }
    }

    fn families(&self) -> &MonitorFamilies {
        &self.monitor.metrics
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Sets the drift gauges from the window (before `/metrics` is encoded).
    pub fn refresh(&self) {
        if let Ok(d) = &self.drift {
            d.summary();
        }
    }

    pub fn labels(&self) -> &QualityLabels {
        &self.labels
    }
}

#[cfg(test)]
mod tests;

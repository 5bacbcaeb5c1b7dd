//! Prometheus metrics of the server, served at `/metrics`. Every series
//! carries the process's `variant` label (`--variant`: `primary`, `canary`),
//! one value per process.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    /// `v2`, `v1` (REST) or `grpc`.
    pub protocol: &'static str,
    pub code: Code,
}

/// `modelship_auth_total`: `key` is the matching key's label (its file
/// name; empty when none matched), `result` is `ok`, `missing` or `wrong`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub key: String,
    pub result: &'static str,
}

/// The `code` label: the HTTP status code (`200`) for REST, the gRPC status
/// code's name (`OK`, `INVALID_ARGUMENT`) for gRPC.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Code {
    Http(u16),
    Grpc(&'static str),
}

impl EncodeLabelValue for Code {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Code::Http(status) => EncodeLabelValue::encode(status, encoder),
            Code::Grpc(name) => EncodeLabelValue::encode(name, encoder),
        }
    }
}

/// All metrics of the process, registered once.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<ModelLabels, Histogram>,
    pub inference_seconds: Family<ModelLabels, Histogram>,
    pub batch_size: Family<ModelLabels, Histogram>,
    pub queue_depth: Family<ModelLabels, Gauge>,
    pub model_load_seconds: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    pub model_ready: Family<ModelLabels, Gauge>,
    pub auth: Family<AuthLabels, Counter>,
    /// Payload logging, feedback, quality and drift (`monitor`).
    pub monitor: MonitorFamilies,
}

fn latency_histogram() -> Histogram {
    // 50µs .. ~3.3s
    Histogram::new(exponential_buckets(0.00005, 2.0, 17))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of a `primary` server.
    pub fn new() -> Metrics {
        Metrics::with_variant("primary")
    }

    /// The metrics of a server whose series all carry `variant`.
    pub fn with_variant(variant: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "modelship",
            [("variant".into(), variant.to_string().into())].into_iter(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = Family::<ModelLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let inference_seconds = Family::<ModelLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let batch_size = Family::<ModelLabels, Histogram>::new_with_constructor(
            batch_histogram as fn() -> Histogram,
        );
        let queue_depth = Family::<ModelLabels, Gauge>::default();
        let model_load_seconds = Family::<ModelLabels, Gauge<f64, AtomicU64>>::default();
        let model_ready = Family::<ModelLabels, Gauge>::default();
        let auth = Family::<AuthLabels, Counter>::default();
        registry.register(
            "requests",
            "Inference requests by model, protocol and status code (HTTP code, or gRPC code name)",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from receiving an inference request to sending its response",
            request_seconds.clone(),
        );
        registry.register(
            "inference_duration_seconds",
            "Time one batch spends in the model runtime",
            inference_seconds.clone(),
        );
        registry.register(
            "batch_size",
            "Rows in each batch run by the model runtime",
            batch_size.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a batch",
            queue_depth.clone(),
        );
        registry.register(
            "model_load_duration_seconds",
            "Time taken to fetch, load and warm up the model",
            model_load_seconds.clone(),
        );
        registry.register(
            "model_ready",
            "1 when the model is loaded and warmed up",
            model_ready.clone(),
        );
        registry.register(
            "auth",
            "Requests to protected routes by API key label (empty when none matched) and result (ok, missing, wrong)",
            auth.clone(),
        );
        let monitor = MonitorFamilies::register(&mut registry);
        Metrics {
            monitor,
            auth,
            registry,
            requests,
            request_seconds,
            inference_seconds,
            batch_size,
            queue_depth,
            model_load_seconds,
            model_ready,
        }
    }

    /// Handles for one model, resolved once so the hot path skips label lookups.
    /// The request series of each `answered` pair (protocol, its success code)
    /// are exported from 0: a series that Prometheus first sees at 300 gives no
    /// rate for those 300, so without them a new pod's first requests would be
    /// missing from every `rate()` (the page's all-replica traffic, the rules).
    pub fn for_model(&self, model: &str, answered: &[(&'static str, Code)]) -> ModelMetrics {
        let labels = ModelLabels {
            model: model.to_string(),
        };
        for &(protocol, code) in answered {
            // Creating the series is all: the guard is dropped at once.
            drop(self.requests.get_or_create(&RequestLabels {
                model: model.to_string(),
                protocol,
                code,
            }));
        }
        ModelMetrics {
            batch_size: self.batch_size.get_or_create(&labels).clone(),
            inference_seconds: self.inference_seconds.get_or_create(&labels).clone(),
            queue_depth: self.queue_depth.get_or_create(&labels).clone(),
            request_seconds: self.request_seconds.get_or_create(&labels).clone(),
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Per-model metric handles used by the engine and the request handlers.
#[derive(Clone)]
pub struct ModelMetrics {
    pub batch_size: Histogram,
    pub inference_seconds: Histogram,
    pub queue_depth: Gauge,
    pub request_seconds: Histogram,
}

impl ModelMetrics {
    /// Handles not registered anywhere, for tests and tools.
    pub fn detached() -> ModelMetrics {
        ModelMetrics {
            batch_size: batch_histogram(),
            inference_seconds: latency_histogram(),
            queue_depth: Gauge::default(),
            request_seconds: latency_histogram(),
        }
    }
}

/// `model` and `version` (empty when unversioned): the labels of the
/// monitoring series of one model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityLabels {
    pub model: String,
    pub version: String,
}

/// A class of a classifier: the card's label, else the index.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub model: String,
    pub version: String,
    pub class: String,
}

/// `result`: `counted`, `unknown`, `expired`, `duplicate`, `invalid`, `unreachable`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedbackLabels {
    pub model: String,
    pub version: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfusionLabels {
    pub model: String,
    pub version: String,
    pub truth: String,
    pub predicted: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub model: String,
    pub version: String,
    pub feature: String,
}

/// One bin (`0`..`k`) of a feature's baseline.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BinLabels {
    pub model: String,
    pub version: String,
    pub feature: String,
    pub bin: String,
}

/// `type` (`request`, `response`, `feedback`) and `result` (`sent`,
/// `dropped`) of payload events; a list because `type` is a Rust keyword.
pub type EventLabels = [(&'static str, &'static str); 2];

/// `reason` of a dropped payload event: `queue_full`, `sink_error`, `shutdown`.
pub type DropLabels = [(&'static str, &'static str); 1];

/// The families of `monitor` (docs/monitoring.md lists them).
#[derive(Clone)]
pub struct MonitorFamilies {
    pub predictions: Family<ClassLabels, Counter>,
    pub feedback: Family<FeedbackLabels, Counter>,
    pub feedback_rows: Family<QualityLabels, Counter>,
    pub feedback_correct: Family<QualityLabels, Counter>,
    pub confusion: Family<ConfusionLabels, Counter>,
    pub abs_error: Family<QualityLabels, Histogram>,
    pub drift_inputs: Family<BinLabels, Counter>,
    pub drift_baseline: Family<BinLabels, Gauge<f64, AtomicU64>>,
    pub drift_psi: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    pub drift_class_psi: Family<QualityLabels, Gauge<f64, AtomicU64>>,
    pub class_prior: Family<ClassLabels, Gauge<f64, AtomicU64>>,
    pub payload_events: Family<EventLabels, Counter>,
    pub payload_dropped: Family<DropLabels, Counter>,
    pub payload_truncated: Family<[(&'static str, &'static str); 1], Counter>,
}

fn abs_error_histogram() -> Histogram {
    // 0.001 .. ~8400
    Histogram::new(exponential_buckets(0.001, 2.0, 24))
}

impl MonitorFamilies {
    fn register(registry: &mut Registry) -> MonitorFamilies {
        let f = MonitorFamilies {
            predictions: Family::default(),
            feedback: Family::default(),
            feedback_rows: Family::default(),
            feedback_correct: Family::default(),
            confusion: Family::default(),
            abs_error: Family::new_with_constructor(abs_error_histogram as fn() -> Histogram),
            drift_inputs: Family::default(),
            drift_baseline: Family::default(),
            drift_psi: Family::default(),
            drift_class_psi: Family::default(),
            class_prior: Family::default(),
            payload_events: Family::default(),
            payload_dropped: Family::default(),
            payload_truncated: Family::default(),
        };
        let r = registry;
        r.register(
            "predictions",
            "Classifier rows by predicted class",
            f.predictions.clone(),
        );
        r.register(
            "feedback",
            "Feedback items by result (counted, unknown, expired, duplicate, invalid, unreachable)",
            f.feedback.clone(),
        );
        r.register(
            "feedback_rows",
            "Classifier rows counted from feedback",
            f.feedback_rows.clone(),
        );
        r.register(
            "feedback_correct",
            "Classifier rows counted from feedback whose truth is the prediction",
            f.feedback_correct.clone(),
        );
        r.register(
            "confusion",
            "Counted classifier rows by truth and predicted class",
            f.confusion.clone(),
        );
        r.register(
            "abs_error",
            "Absolute errors of a regressor, from feedback",
            f.abs_error.clone(),
        );
        r.register(
            "drift_inputs",
            "Input values by feature and baseline bin",
            f.drift_inputs.clone(),
        );
        r.register(
            "drift_baseline_proportion",
            "The training share of each baseline bin",
            f.drift_baseline.clone(),
        );
        r.register(
            "drift_psi",
            "Population stability index of a feature over this pod's drift window",
            f.drift_psi.clone(),
        );
        r.register(
            "drift_class_psi",
            "Population stability index of the predicted class mix against the training prior, over this pod's drift window",
            f.drift_class_psi.clone(),
        );
        r.register(
            "drift_class_prior",
            "The training share of each class",
            f.class_prior.clone(),
        );
        r.register(
            "payload_log_events",
            "Payload log events by type (request, response, feedback) and result (sent, dropped)",
            f.payload_events.clone(),
        );
        r.register(
            "payload_log_dropped",
            "Payload log events dropped, by reason (queue_full, sink_error, shutdown)",
            f.payload_dropped.clone(),
        );
        r.register(
            "payload_log_truncated",
            "Payload log events cut at the size cap, by type",
            f.payload_truncated.clone(),
        );
        f
    }
}

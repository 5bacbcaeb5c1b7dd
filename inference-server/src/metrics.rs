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
        Metrics {
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
    pub fn for_model(&self, model: &str) -> ModelMetrics {
        let labels = ModelLabels {
            model: model.to_string(),
        };
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

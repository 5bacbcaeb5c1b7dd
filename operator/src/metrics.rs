//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` HTTP server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Label of a failed reconcile: the error's short label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

/// The operator's metrics, all prefixed `modelship_operator_`.
pub struct Metrics {
    pub reconciliations: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub managed_objects: Gauge,
    pub leader: Gauge,
    /// Ready once the process is connected to the API server and runs (or stands by).
    pub ready: AtomicBool,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("modelship_operator");
        let reconciliations = Counter::default();
        registry.register(
            "reconciliations",
            "Reconciliations of ModelDeployments started",
            reconciliations.clone(),
        );
        let failures = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed, by error",
            failures.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one ModelDeployment",
            reconcile_duration.clone(),
        );
        let managed_objects = Gauge::default();
        registry.register(
            "managed_objects",
            "ModelDeployments the operator manages",
            managed_objects.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );
        Self {
            reconciliations,
            failures,
            reconcile_duration,
            managed_objects,
            leader,
            ready: AtomicBool::new(false),
            registry,
        }
    }
}

impl Metrics {
    pub fn failure(&self, label: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: label.into(),
            })
            .inc();
    }

    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The HTTP routes of the operator.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(metrics)
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn ready_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Serves the routes on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_prefix_and_error_label() {
        let metrics = Metrics::default();
        metrics.reconciliations.inc();
        metrics.failure("apply");
        metrics.observe_reconcile(Duration::from_millis(20));
        let text = metrics.encode();
        assert!(
            text.contains("modelship_operator_reconciliations_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"modelship_operator_reconcile_failures_total{error="apply"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("modelship_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("modelship_operator_managed_objects"),
            "{text}"
        );
    }
}

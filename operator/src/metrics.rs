//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` HTTP server.
//!
//! One port serves all three. Plain HTTP by default (local runs, the tests); with
//! `--metrics-secure` (the chart's default) the port speaks TLS ([`tls`]) and `/metrics` answers
//! only a reader the API server allows ([`auth`]: TokenReview, then SubjectAccessReview).
//! `/healthz` and `/readyz` stay open on the same port, so the kubelet probes them over HTTPS
//! without a token (it does not verify the certificate).

pub mod auth;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use auth::MetricsAuth;

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

/// The HTTP routes of the operator; with `auth`, `/metrics` needs an allowed bearer token.
pub fn router(metrics: Arc<Metrics>, auth: Option<MetricsAuth>) -> Router {
    let mut routes = Router::new().route("/metrics", get(metrics_handler));
    if let Some(auth) = auth {
        // route_layer: the routes above only, and an unknown path stays a plain 404.
        routes = routes.route_layer(middleware::from_fn_with_state(
            auth,
            auth::require_metrics_reader,
        ));
    }
    routes
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

/// How the metrics port is served (the `--metrics-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub addr: SocketAddr,
    /// TLS, and `/metrics` only for readers the API server allows.
    pub secure: bool,
    /// `tls.crt` and `tls.key`; `None`: a self-signed certificate made at start.
    pub cert_dir: Option<PathBuf>,
    /// Names of the self-signed certificate besides loopback and the host name.
    pub cert_names: Vec<String>,
}

/// A bound metrics port, plain or secure.
pub enum Endpoint {
    Plain(tokio::net::TcpListener),
    Secure {
        listener: tls::TlsListener,
        auth: MetricsAuth,
    },
}

impl Endpoint {
    /// Binds the port and, when secure, loads or makes the certificate. Done before the
    /// server task starts, so that a taken port or a bad certificate stops the operator with
    /// a clear error.
    pub async fn bind(config: &EndpointConfig, client: &kube::Client) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on --metrics-addr {}", config.addr))?;
        if !config.secure {
            return Ok(Endpoint::Plain(listener));
        }
        let (tls_config, source) =
            tls::server_config(config.cert_dir.as_deref(), &config.cert_names)
                .context("--metrics-secure")?;
        tracing::info!(certificate = %source, "metrics over TLS, readers checked by the API server");
        Ok(Endpoint::Secure {
            listener: tls::TlsListener::new(listener, tls_config)?,
            auth: MetricsAuth::new(client.clone()),
        })
    }
}

/// Serves the routes on `endpoint` until `shutdown` turns true.
pub async fn serve(
    endpoint: Endpoint,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    match endpoint {
        Endpoint::Plain(listener) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz over HTTP");
            }
            axum::serve(listener, router(metrics, None))
                .with_graceful_shutdown(stop)
                .await
        }
        Endpoint::Secure { listener, auth } => {
            use axum::serve::Listener as _;
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving /metrics (authorized), /healthz and /readyz over HTTPS");
            }
            axum::serve(listener, router(metrics, Some(auth)))
                .with_graceful_shutdown(stop)
                .await
        }
    }
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

//! `modelship-server serve`: listen first (REST, and gRPC unless
//! `--grpc-port 0`), then load and warm up the model, then report ready; on
//! SIGTERM report not-ready, drain both listeners, and exit.
//! [`ServeArgs`] are its flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;

use super::args::{ModelArgs, RuntimeArgs};
use super::termination::write_termination_message;
use crate::auth::{ApiKeys, RELOAD_INTERVAL};
use crate::engine::{BatchWait, Engine, EngineConfig, warm_up_inputs};
use crate::http::conn::ConnLimits;
use crate::metrics::{Code, Metrics, ModelLabels};
use crate::model::ModelArtifact;
use crate::runtime::{self, RuntimeOptions};
use crate::source;
use crate::state::{Access, AppState, HttpLimits, ModelState, ServedModel};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Name to serve the model under (default: the file name without .onnx, or the builtin name).
    #[arg(long, env = "MODELSHIP_MODEL_NAME")]
    pub model_name: Option<String>,
    /// Version to report; when set, /versions/{v} routes must name it.
    #[arg(long, env = "MODELSHIP_MODEL_VERSION")]
    pub model_version: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Address to listen on.
    #[arg(long, env = "MODELSHIP_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "MODELSHIP_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Port of the gRPC listener (the same protocol, with gRPC health and
    /// reflection); 0 turns it off.
    #[arg(long, env = "MODELSHIP_GRPC_PORT", default_value_t = 8081)]
    pub grpc_port: u16,
    /// Most rows merged into one batch (1 disables batching).
    #[arg(long, env = "MODELSHIP_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,
    /// Longest a batch waits for more requests once its queue is empty, e.g.
    /// `1ms`, `500us`. By default it waits only for requests the server has
    /// already received and is still reading or decoding; with none on their
    /// way it runs at once, so a lone request never waits.
    #[arg(long, env = "MODELSHIP_MAX_BATCH_DELAY", default_value = "1ms", value_parser = humantime::parse_duration)]
    pub max_batch_delay: Duration,
    /// When a batch waits: `admitted` (for requests already received, see
    /// --max-batch-delay) or `fixed` (under load, the whole delay whether or
    /// not more requests come: bigger batches, more latency; the earlier
    /// default, kept for comparison).
    #[arg(
        long,
        env = "MODELSHIP_BATCH_WAIT",
        value_enum,
        default_value = "admitted"
    )]
    pub batch_wait: BatchWaitArg,
    /// Requests that may wait for a batch; more are refused with 429.
    #[arg(long, env = "MODELSHIP_MAX_QUEUE", default_value_t = 1024)]
    pub max_queue: usize,
    /// Batches run at the same time (0 = number of cores).
    #[arg(long, env = "MODELSHIP_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Largest request body (and gRPC message) accepted, in bytes (larger:
    /// 413, or RESOURCE_EXHAUSTED over gRPC).
    #[arg(long, env = "MODELSHIP_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest a client may take to send a request body (slower: 408) or a
    /// gRPC message, counted from its headers (slower: DEADLINE_EXCEEDED).
    #[arg(long, env = "MODELSHIP_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// Longest an HTTP/1.1 client may take to send a request's line and
    /// headers, counted from the connection's start or the previous answer
    /// (so a keep-alive connection idle this long is closed too); slower
    /// clients are disconnected. Bounds clients that send headers a byte at a time.
    #[arg(long, env = "MODELSHIP_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Longest a connection (HTTP/1.1 or HTTP/2, REST or gRPC) may move no
    /// byte while none of its requests is in flight; then it is shut down
    /// (HTTP/2: GOAWAY).
    #[arg(long, env = "MODELSHIP_IDLE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Open connections at most, per listener; past it new connections are
    /// closed at once. 0: no cap.
    #[arg(long, env = "MODELSHIP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// After SIGTERM, how long to keep serving while reporting not-ready, so
    /// load balancers stop sending traffic before the listener closes.
    #[arg(long, env = "MODELSHIP_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,
    /// After SIGTERM (and the drain delay), how long in-flight requests may take before exit.
    #[arg(long, env = "MODELSHIP_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// A directory of API keys (a mounted Secret: one file per key, its name
    /// the key's label), re-read every 2 s. When set, inference and model
    /// metadata need `Authorization: Bearer KEY` or `X-API-Key: KEY`; with
    /// no key in it every such request is refused. Unset: no key is asked for.
    #[arg(long, env = "MODELSHIP_API_KEYS_DIR", value_name = "DIR")]
    pub api_keys_dir: Option<PathBuf>,
    /// The variant this server is (`primary`, `canary`, or another short
    /// token): sent as `x-modelship-variant` in every answer and as the
    /// `variant` label of every metric.
    #[arg(long, env = "MODELSHIP_VARIANT", default_value = "primary", value_parser = parse_variant)]
    pub variant: String,
    /// Payload logging, feedback, drift, the page's Prometheus (docs/monitoring.md).
    #[command(flatten)]
    pub monitor: Box<crate::monitor::MonitorArgs>,
}

/// A variant: 1 to 32 ASCII letters, digits, `-`, `_` or `.`, so it is a
/// valid header value and a bounded metric label.
fn parse_variant(s: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("a variant is 1 to 32 letters, digits, '-', '_' or '.'".into())
    }
}

/// `--batch-wait`: the engine's [`BatchWait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchWaitArg {
    Admitted,
    Fixed,
}

impl ServeArgs {
    /// Batches that run at the same time: `--workers`, or one per core.
    pub fn workers(&self) -> usize {
        runtime::threads(self.workers)
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            max_batch_size: self.max_batch_size.max(1),
            max_batch_delay: self.max_batch_delay,
            wait: match self.batch_wait {
                BatchWaitArg::Admitted => BatchWait::Admitted,
                BatchWaitArg::Fixed => BatchWait::Fixed,
            },
            max_queue: self.max_queue.max(1),
            workers: self.workers(),
        }
    }

    /// Each listener's connection limits.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }

    pub fn runtime_options(&self) -> RuntimeOptions {
        self.runtime.options(self.workers())
    }
}

/// Runs the server until SIGTERM/SIGINT. A model that cannot be fetched or
/// loaded ends the process with a non-zero code and its cause in the
/// termination log, so Kubernetes (and the operator) can tell why.
pub async fn run(args: ServeArgs) -> ExitCode {
    let started = Instant::now();
    // Without a configured name the name comes from the model file, so read it first.
    let (name, mut artifact) = match &args.model_name {
        Some(name) => (name.clone(), None),
        None => {
            match source::load_artifact(&args.model.model, args.model.checksum.sha256.as_deref())
                .await
            {
                Ok(a) => (a.default_name.clone(), Some(a)),
                Err(e) => return fail(&format!("model fetch failed: {e}")),
            }
        }
    };

    let metrics = Arc::new(Metrics::with_variant(&args.variant));
    let identity = crate::monitor::Identity::from_env(args.port, &args.variant);
    let monitor = match crate::monitor::Monitor::start(&args.monitor, identity, &metrics) {
        Ok(m) => m,
        Err(msg) => return fail(&msg),
    };
    let keys = args.api_keys_dir.clone().map(|dir| {
        let keys = ApiKeys::load(dir, metrics.clone());
        keys.watch(RELOAD_INTERVAL);
        keys
    });
    let state = AppState::with_access(
        std::slice::from_ref(&name),
        metrics.clone(),
        HttpLimits {
            max_body_bytes: args.max_body_bytes,
        },
        Access {
            keys,
            variant: args.variant.clone(),
        },
    );
    let listener = match listen(&args.host, args.port).await {
        Ok(l) => l,
        Err(msg) => return fail(&msg),
    };
    let grpc_listener = match args.grpc_port {
        0 => None,
        port => match listen(&args.host, port).await {
            Ok(l) => Some(l),
            Err(msg) => return fail(&msg),
        },
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = crate::http::router(state.clone(), args.body_timeout);
    let limits = args.conn_limits();
    let server = tokio::spawn(serve_until(listener, app, limits, stop_rx.clone()));
    let grpc_server = grpc_listener.map(|l| {
        let grpc = crate::grpc::router(state.clone(), args.body_timeout);
        tokio::spawn(serve_until(l, grpc, limits, stop_rx))
    });

    // Load while already answering liveness (and readiness: not yet).
    let artifact = match artifact.take() {
        Some(a) => a,
        None => {
            match source::load_artifact(&args.model.model, args.model.checksum.sha256.as_deref())
                .await
            {
                Ok(a) => a,
                Err(e) => return fail(&format!("model fetch failed: {e}")),
            }
        }
    };
    let served = match load_and_warm_up(&name, &args, artifact, &metrics, &monitor).await {
        Ok(m) => m,
        Err(msg) => {
            state.set_model(&name, ModelState::Failed(msg.clone()));
            return fail(&format!("model load failed: {msg}"));
        }
    };
    let load_seconds = started.elapsed().as_secs_f64();
    metrics
        .model_load_seconds
        .get_or_create(&ModelLabels {
            model: name.clone(),
        })
        .set(load_seconds);
    tracing::info!(
        model = %name,
        platform = served.platform,
        origin = %served.origin,
        load_seconds,
        "model ready"
    );
    state.set_model(&name, ModelState::Ready(Arc::new(served)));

    shutdown_signal().await;
    tracing::info!(drain = ?args.drain_delay, "shutting down: readiness is now false");
    state.start_draining();
    tokio::time::sleep(args.drain_delay).await;
    let _ = stop_tx.send(true);
    let both = async {
        let rest = server.await;
        let grpc = match grpc_server {
            Some(g) => g.await,
            None => Ok(Ok(())),
        };
        (rest, grpc)
    };
    let flush_from = Instant::now();
    let exit = match tokio::time::timeout(args.shutdown_timeout, both).await {
        Ok((rest, grpc)) => match rest.and_then(|r| grpc.map(|g| r.and(g))) {
            Ok(Ok(())) => {
                tracing::info!("all requests finished; bye");
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => fail(&format!("server error: {e}")),
            Err(e) => fail(&format!("server task failed: {e}")),
        },
        Err(_) => {
            tracing::warn!(timeout = ?args.shutdown_timeout, "in-flight requests did not finish in time");
            ExitCode::SUCCESS
        }
    };
    // The payload log is flushed in what is left of the shutdown timeout (at least 1 s).
    let left = args.shutdown_timeout.saturating_sub(flush_from.elapsed());
    monitor.close(left.max(Duration::from_secs(1))).await;
    exit
}

/// Binds `host:port`; the error is the process's termination message.
async fn listen(host: &str, port: u16) -> Result<TcpListener, String> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("invalid listen address {host}:{port}: {e}"))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(%local, "listening");
    Ok(listener)
}

/// Serves `app` on `listener` within `limits` until `stop` turns true, then
/// lets the requests in flight finish (HTTP/2 connections get a GOAWAY).
async fn serve_until(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    crate::http::conn::serve(listener, app, limits, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    })
    .await
}

/// Loads `artifact` with the configured runtime and runs one warm-up inference.
pub async fn load_and_warm_up(
    name: &str,
    args: &ServeArgs,
    artifact: ModelArtifact,
    metrics: &Metrics,
    monitor: &Arc<crate::monitor::Monitor>,
) -> Result<ServedModel, String> {
    let options = args.runtime_options();
    let (backend, artifact) = tokio::task::spawn_blocking(move || {
        let backend = runtime::load(&artifact, &options);
        (backend, artifact)
    })
    .await
    .map_err(|e| format!("loader panicked: {e}"))?;
    let backend = backend.map_err(|e| e.to_string())?;
    let ModelArtifact { origin, card, .. } = artifact;
    let platform = backend.platform();
    let mut answered = vec![("v2", Code::Http(200)), ("v1", Code::Http(200))];
    if args.grpc_port != 0 {
        answered.push((crate::grpc::PROTOCOL, Code::Grpc("OK")));
    }
    let model_metrics = metrics.for_model(name, &answered);
    let engine = Engine::start(name, backend, args.engine_config(), model_metrics.clone());
    let warm_up = warm_up_inputs(engine.signature());
    engine
        .infer(engine.admit(), warm_up)
        .await
        .map_err(|e| format!("warm-up inference failed: {e}"))?;
    let monitor = monitor.for_model(
        name,
        args.model_version.as_deref(),
        engine.signature(),
        card.as_ref(),
    );
    Ok(ServedModel {
        monitor,
        name: name.to_string(),
        version: args.model_version.clone(),
        platform,
        origin,
        engine,
        card,
        metrics: model_metrics,
    })
}

fn fail(msg: &str) -> ExitCode {
    tracing::error!("{msg}");
    eprintln!("modelship-server: {msg}");
    write_termination_message(msg);
    ExitCode::FAILURE
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

//! `modelship-server serve`: listen first, then load and warm up the model,
//! then report ready; on SIGTERM report not-ready, drain, and exit.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::backends;
use crate::config::ServeArgs;
use crate::engine::Engine;
use crate::metrics::{Metrics, ModelLabels};
use crate::model::ModelArtifact;
use crate::source;
use crate::state::{AppState, HttpLimits, ModelState, ServedModel};
use crate::tensor::{ModelSignature, Tensor, TensorData};

/// Runs the server until SIGTERM/SIGINT. A model that cannot be fetched or
/// loaded ends the process with a non-zero code and its cause in the
/// termination log, so Kubernetes (and the operator) can tell why.
pub async fn run(args: ServeArgs) -> ExitCode {
    let started = Instant::now();
    // Without a configured name the name comes from the model file, so read it first.
    let (name, mut artifact) = match &args.model_name {
        Some(name) => (name.clone(), None),
        None => match source::load_artifact(&args.model, args.sha256.as_deref()).await {
            Ok(a) => (a.default_name.clone(), Some(a)),
            Err(e) => return fail(&format!("model fetch failed: {e}")),
        },
    };

    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(
        std::slice::from_ref(&name),
        metrics.clone(),
        HttpLimits {
            max_body_bytes: args.max_body_bytes,
        },
    );
    let addr: SocketAddr = match format!("{}:{}", args.host, args.port).parse() {
        Ok(a) => a,
        Err(e) => {
            return fail(&format!(
                "invalid listen address {}:{}: {e}",
                args.host, args.port
            ));
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {addr}: {e}")),
    };
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(%local, model = %name, "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = crate::http::router(state.clone(), args.body_timeout);
    let server = tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });

    // Load while already answering liveness (and readiness: not yet).
    let artifact = match artifact.take() {
        Some(a) => a,
        None => match source::load_artifact(&args.model, args.sha256.as_deref()).await {
            Ok(a) => a,
            Err(e) => return fail(&format!("model fetch failed: {e}")),
        },
    };
    let served = match load_and_warm_up(&name, &args, artifact, &metrics).await {
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
    match tokio::time::timeout(args.shutdown_timeout, server).await {
        Ok(Ok(Ok(()))) => {
            tracing::info!("all requests finished; bye");
            ExitCode::SUCCESS
        }
        Ok(Ok(Err(e))) => fail(&format!("server error: {e}")),
        Ok(Err(e)) => fail(&format!("server task failed: {e}")),
        Err(_) => {
            tracing::warn!(timeout = ?args.shutdown_timeout, "in-flight requests did not finish in time");
            ExitCode::SUCCESS
        }
    }
}

/// Loads `artifact` with the configured runtime and runs one warm-up inference.
pub async fn load_and_warm_up(
    name: &str,
    args: &ServeArgs,
    artifact: ModelArtifact,
    metrics: &Metrics,
) -> Result<ServedModel, String> {
    let options = args.runtime_options();
    let (backend, artifact) = tokio::task::spawn_blocking(move || {
        let backend = backends::load(&artifact, &options);
        (backend, artifact)
    })
    .await
    .map_err(|e| format!("loader panicked: {e}"))?;
    let backend = backend.map_err(|e| e.to_string())?;
    let ModelArtifact { origin, card, .. } = artifact;
    let platform = backend.platform();
    let model_metrics = metrics.for_model(name);
    let engine = Engine::start(name, backend, args.engine_config(), model_metrics.clone());
    let warm_up = warm_up_inputs(engine.signature())?;
    engine
        .infer(warm_up)
        .await
        .map_err(|e| format!("warm-up inference failed: {e}"))?;
    Ok(ServedModel {
        name: name.to_string(),
        version: args.model_version.clone(),
        platform,
        origin,
        engine,
        card,
        metrics: model_metrics,
    })
}

/// One row of zeros (or `false`, or empty strings) for every input; dynamic dimensions are 1.
pub fn warm_up_inputs(signature: &ModelSignature) -> Result<Vec<Tensor>, String> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let n: usize = shape.iter().product();
            // All-zero bytes decode to 0, false, or (4 bytes each) empty strings.
            let zero = TensorData::from_le_bytes(
                spec.datatype,
                &vec![0u8; n * spec.datatype.element_size().unwrap_or(4)],
            )
            .map_err(|e| format!("cannot build a warm-up input for '{}': {e}", spec.name))?;
            Tensor::new(spec.name.clone(), shape, zero).map_err(|e| e.to_string())
        })
        .collect()
}

fn fail(msg: &str) -> ExitCode {
    tracing::error!("{msg}");
    eprintln!("modelship-server: {msg}");
    crate::fetch::write_termination_message(msg);
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

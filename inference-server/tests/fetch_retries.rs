//! `modelship-server fetch` against an origin that fails: transient failures (503, a body
//! cut short, no listener) are retried with backoff and then succeed or exit 1 with the
//! last cause; permanent ones (404, sha256 mismatch, a bad URI) exit 12 after one request.

mod source_fixtures;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use source_fixtures::*;

/// Requests seen per route.
#[derive(Default)]
struct Counts {
    flaky: AtomicU32,
    cut: AtomicU32,
    down: AtomicU32,
    missing: AtomicU32,
}

/// An origin whose `/flaky/iris.onnx` answers 503 twice before the model, whose
/// `/cut/iris.onnx` sends half the body and drops the connection once, whose
/// `/down/iris.onnx` always answers 503, and whose other paths are 404.
async fn start_flaky_server() -> (std::net::SocketAddr, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let app = Router::new()
        .route(
            "/flaky/iris.onnx",
            get(|State(c): State<Arc<Counts>>| async move {
                if c.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    model_bytes().into_response()
                }
            }),
        )
        .route(
            "/cut/iris.onnx",
            get(|State(c): State<Arc<Counts>>| async move {
                let model = model_bytes();
                if c.cut.fetch_add(1, Ordering::SeqCst) > 0 {
                    return model.into_response();
                }
                let half = Bytes::from(model[..model.len() / 2].to_vec());
                let chunks = futures::stream::iter([
                    Ok(half),
                    Err(std::io::Error::other("origin went away")),
                ]);
                Response::builder()
                    .header(header::CONTENT_LENGTH, model.len())
                    .body(Body::from_stream(chunks))
                    .unwrap()
            }),
        )
        .route(
            "/down/iris.onnx",
            get(|State(c): State<Arc<Counts>>| async move {
                c.down.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .fallback(|State(c): State<Arc<Counts>>| async move {
            c.missing.fetch_add(1, Ordering::SeqCst);
            StatusCode::NOT_FOUND
        })
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, counts)
}

/// `fetch URI DIR` with quick retries (4 tries, waits of 50, 100, 200 ms).
async fn fetch(uri: &str, dir: &Path, extra: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_modelship-server"));
    command
        .args(["fetch", uri])
        .arg(dir.join("models"))
        .args(extra)
        .env("MODELSHIP_FETCH_ATTEMPTS", "4")
        .env("MODELSHIP_FETCH_RETRY_DELAY", "50ms")
        .env("MODELSHIP_TERMINATION_LOG", dir.join("termination-log"))
        .env_remove("MODELSHIP_SHA256")
        .envs(env.iter().map(|(k, v)| (k, v)));
    tokio::task::spawn_blocking(move || command.output().expect("run modelship-server"))
        .await
        .unwrap()
}

fn termination_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("termination-log")).unwrap_or_default()
}

fn retries_logged(output: &Output) -> usize {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("model read failed; retrying"))
        .count()
}

#[tokio::test]
async fn a_503_twice_then_the_model_is_fetched_on_the_third_try() {
    let (addr, counts) = start_flaky_server().await;
    let out = tempfile::tempdir().unwrap();
    let sha = sha256_hex(&model_bytes());
    let uri = format!("http://{addr}/flaky/iris.onnx");
    let output = fetch(&uri, out.path(), &["--sha256", &sha], &[]).await;
    assert!(output.status.success(), "{output:?}");
    // The card's request is a 404 (no card), answered once per try that got that far.
    assert_eq!(counts.flaky.load(Ordering::SeqCst), 3);
    assert_eq!(retries_logged(&output), 2, "{output:?}");
    let models = out.path().join("models");
    assert_eq!(
        std::fs::read(models.join("iris.onnx")).unwrap(),
        model_bytes()
    );
    assert_eq!(dir_listing(&models), ["iris.onnx"]);
}

#[tokio::test]
async fn a_body_cut_short_is_fetched_again_whole() {
    let (addr, counts) = start_flaky_server().await;
    let out = tempfile::tempdir().unwrap();
    let sha = sha256_hex(&model_bytes());
    let uri = format!("http://{addr}/cut/iris.onnx");
    let output = fetch(&uri, out.path(), &["--sha256", &sha], &[]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(counts.cut.load(Ordering::SeqCst), 2);
    let models = out.path().join("models");
    assert_eq!(
        std::fs::read(models.join("iris.onnx")).unwrap(),
        model_bytes()
    );
    // No partial file of the cut try is left behind.
    assert_eq!(dir_listing(&models), ["iris.onnx"]);
}

#[tokio::test]
async fn a_lasting_503_exits_1_after_the_attempts_with_the_last_cause() {
    let (addr, counts) = start_flaky_server().await;
    let out = tempfile::tempdir().unwrap();
    let uri = format!("http://{addr}/down/iris.onnx");
    let started = Instant::now();
    let output = fetch(&uri, out.path(), &[], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(counts.down.load(Ordering::SeqCst), 4);
    // 50 + 100 + 200 ms of backoff between the 4 tries.
    assert!(started.elapsed() >= Duration::from_millis(350));
    assert_eq!(
        termination_log(out.path()),
        format!("GET {uri} returned 503 Service Unavailable")
    );
    assert_eq!(retries_logged(&output), 3, "{output:?}");
}

#[tokio::test]
async fn no_listener_is_transient_and_exits_1() {
    let out = tempfile::tempdir().unwrap();
    let uri = format!("http://127.0.0.1:{}/iris.onnx", closed_port());
    let output = fetch(&uri, out.path(), &["--attempts", "2"], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(retries_logged(&output), 1, "{output:?}");
    let log = termination_log(out.path());
    assert!(log.starts_with(&format!("cannot read {uri}: ")), "{log}");
}

#[tokio::test]
async fn permanent_failures_exit_12_after_one_request() {
    let (addr, counts) = start_flaky_server().await;
    let out = tempfile::tempdir().unwrap();

    let uri = format!("http://{addr}/nope/iris.onnx");
    let output = fetch(&uri, out.path(), &[], &[]).await;
    assert_eq!(output.status.code(), Some(12), "{output:?}");
    assert_eq!(counts.missing.load(Ordering::SeqCst), 1);
    assert_eq!(retries_logged(&output), 0);
    assert_eq!(
        termination_log(out.path()),
        format!("GET {uri} returned 404 Not Found")
    );

    let uri = format!("http://{addr}/flaky/iris.onnx");
    let wrong = "0".repeat(64);
    // Through the 503s to the model, whose digest is not the one asked for.
    let output = fetch(&uri, out.path(), &["--sha256", &wrong], &[]).await;
    assert_eq!(output.status.code(), Some(12), "{output:?}");
    assert!(
        termination_log(out.path()).starts_with(&format!("sha256 mismatch for {uri}")),
        "{}",
        termination_log(out.path())
    );

    for bad in ["ftp://host/m.onnx", "pvc://claim/m.onnx", "s3:///no-bucket"] {
        let output = fetch(bad, out.path(), &[], &[]).await;
        assert_eq!(output.status.code(), Some(12), "{bad}: {output:?}");
    }
    let output = fetch(&uri, out.path(), &["--sha256", "not-hex"], &[]).await;
    assert_eq!(output.status.code(), Some(12), "{output:?}");
}

/// S3: a missing key is permanent (12); an endpoint that does not answer is transient (1).
#[tokio::test]
async fn s3_missing_key_exits_12_and_a_dead_endpoint_exits_1() {
    let Some(moto) = moto_or_skip() else { return };
    moto.put("models", &[("iris.onnx", model_bytes())]).await;
    let out = tempfile::tempdir().unwrap();
    let output = fetch("s3://models/nope.onnx", out.path(), &[], &moto.s3_env()).await;
    assert_eq!(output.status.code(), Some(12), "{output:?}");
    assert_eq!(retries_logged(&output), 0);

    let mut env = moto.s3_env();
    env[0].1 = format!("http://127.0.0.1:{}", closed_port());
    let output = fetch(
        "s3://models/iris.onnx",
        out.path(),
        &["--attempts", "2"],
        &env,
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(retries_logged(&output), 1, "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(S3_SECRET_KEY), "{stderr}");
}

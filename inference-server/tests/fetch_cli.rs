//! `modelship-server fetch URI DIR` as the operator's init container runs it: exit code,
//! one-line cause on stderr, termination log, and S3 configured by `AWS_*` variables.

mod source_fixtures;

use std::path::Path;
use std::process::Output;

use source_fixtures::*;

/// Runs `modelship-server fetch ARGS` with a termination log in `log_dir` and `env` set.
async fn fetch(args: &[&str], log_dir: &Path, env: &[(&str, String)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_modelship-server"));
    command
        .arg("fetch")
        .args(args)
        .env("MODELSHIP_TERMINATION_LOG", log_dir.join("termination-log"))
        .env_remove("MODELSHIP_SHA256")
        .envs(env.iter().map(|(k, v)| (k, v)));
    // Off the test's runtime, which serves the HTTP fixture meanwhile.
    tokio::task::spawn_blocking(move || command.output().expect("run modelship-server"))
        .await
        .unwrap()
}

fn termination_log(log_dir: &Path) -> Option<String> {
    std::fs::read_to_string(log_dir.join("termination-log")).ok()
}

#[tokio::test]
async fn fetch_downloads_into_the_directory() {
    let addr = start_http_server().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("models");
    let sha = sha256_hex(&model_bytes());
    let uri = format!("http://{addr}/m/iris.onnx");
    let output = fetch(
        &[&uri, dir.to_str().unwrap(), "--sha256", &sha],
        out.path(),
        &[],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains(&sha), "{stdout}");
    assert_eq!(std::fs::read(dir.join("iris.onnx")).unwrap(), model_bytes());
    assert_eq!(dir_listing(&dir), ["iris.card.json", "iris.onnx"]);
    assert_eq!(termination_log(out.path()), None);
}

#[tokio::test]
async fn fetch_failure_exits_non_zero_with_one_line_cause_in_stderr_and_termination_log() {
    let addr = start_http_server().await;
    let out = tempfile::tempdir().unwrap();
    let uri = format!("http://{addr}/missing.onnx");
    let output = fetch(
        &[&uri, out.path().join("models").to_str().unwrap()],
        out.path(),
        &[],
    )
    .await;
    assert!(!output.status.success(), "{output:?}");
    let cause = format!("GET {uri} returned 404 Not Found");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().any(|line| line == format!("error: {cause}")),
        "{stderr}"
    );
    assert_eq!(termination_log(out.path()).as_deref(), Some(cause.as_str()));
}

#[tokio::test]
async fn fetch_checksum_mismatch_is_reported() {
    let addr = start_http_server().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("models");
    let uri = format!("http://{addr}/m/iris.onnx");
    let wrong = "0".repeat(64);
    let env = [("MODELSHIP_SHA256", wrong.clone())];
    let output = fetch(&[&uri, dir.to_str().unwrap()], out.path(), &env).await;
    assert!(!output.status.success(), "{output:?}");
    let expected = format!(
        "sha256 mismatch for {uri}: expected {wrong}, got {}",
        sha256_hex(&model_bytes())
    );
    assert_eq!(
        termination_log(out.path()).as_deref(),
        Some(expected.as_str())
    );
    assert!(!dir.join("iris.onnx").exists());
}

/// The S3 client reads its endpoint, region and credentials from the usual AWS variables.
#[tokio::test]
async fn fetch_from_s3_configured_by_aws_environment() {
    let moto = match Moto::start() {
        Ok(moto) => moto,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    moto.put(
        "models",
        &[
            ("iris.onnx", model_bytes()),
            ("iris.card.json", CARD.as_bytes().to_vec()),
        ],
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("models");
    let env = moto.s3_env();
    let output = fetch(
        &["s3://models/iris.onnx", dir.to_str().unwrap()],
        out.path(),
        &env,
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(std::fs::read(dir.join("iris.onnx")).unwrap(), model_bytes());
    assert_eq!(dir_listing(&dir), ["iris.card.json", "iris.onnx"]);

    let output = fetch(
        &["s3://models/nope.onnx", dir.to_str().unwrap()],
        out.path(),
        &env,
    )
    .await;
    assert!(!output.status.success(), "{output:?}");
    let log = termination_log(out.path()).unwrap_or_default();
    assert!(
        log.starts_with("s3://models/nope.onnx not found: 404 Not Found: NoSuchKey"),
        "{log}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(S3_SECRET_KEY), "{stderr}");
}

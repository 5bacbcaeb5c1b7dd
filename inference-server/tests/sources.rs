//! Model sources end to end: local files and directories, file://, HTTP on a server the
//! test starts, S3 on a moto server the test starts, builtin://; sha256 and model cards.

mod source_fixtures;

use std::path::Path;

use modelship_server::model::ModelCard;
use modelship_server::source::{
    Fetched, RetryPolicy, SourceError, SourceOptions, fetch_to_dir, fetch_to_dir_with,
    load_artifact, load_artifact_with,
};
use source_fixtures::*;

fn card() -> ModelCard {
    serde_json::from_str(CARD).unwrap()
}

/// A directory holding `iris.onnx`, and its card when `with_card`.
fn model_dir(with_card: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("iris.onnx"), model_bytes()).unwrap();
    if with_card {
        std::fs::write(dir.path().join("iris.card.json"), CARD).unwrap();
    }
    dir
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

async fn load_err(uri: &str, sha256: Option<&str>) -> String {
    let err = load_artifact(uri, sha256).await.expect_err(uri);
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

#[tokio::test]
async fn local_file_is_read_with_its_card() {
    let dir = model_dir(true);
    let file = dir.path().join("iris.onnx");
    let artifact = load_artifact(path_str(&file), None).await.unwrap();
    assert_eq!(artifact.default_name, "iris");
    assert_eq!(artifact.origin, file.display().to_string());
    assert_eq!(artifact.onnx, model_bytes());
    assert_eq!(artifact.card, Some(card()));
}

#[tokio::test]
async fn card_is_optional() {
    let dir = model_dir(false);
    let artifact = load_artifact(path_str(&dir.path().join("iris.onnx")), None)
        .await
        .unwrap();
    assert_eq!(artifact.card, None);
}

#[tokio::test]
async fn directory_serves_its_single_onnx_file() {
    let dir = model_dir(true);
    std::fs::write(dir.path().join("README.md"), "not a model").unwrap();
    let artifact = load_artifact(path_str(dir.path()), None).await.unwrap();
    assert_eq!(artifact.default_name, "iris");
    assert_eq!(
        artifact.origin,
        dir.path().join("iris.onnx").display().to_string()
    );
    assert_eq!(artifact.card, Some(card()));
}

#[tokio::test]
async fn directory_without_or_with_several_models_is_an_error_naming_them() {
    let empty = tempfile::tempdir().unwrap();
    let message = load_err(path_str(empty.path()), None).await;
    assert_eq!(
        message,
        format!("no *.onnx model in {}", empty.path().display())
    );

    let dir = model_dir(false);
    std::fs::write(dir.path().join("other.onnx"), b"x").unwrap();
    let message = load_err(path_str(dir.path()), None).await;
    assert!(message.contains("iris.onnx, other.onnx"), "{message}");
}

#[tokio::test]
async fn file_uri_is_a_local_path() {
    let dir = model_dir(true);
    let uri = format!("file://{}", dir.path().join("iris.onnx").display());
    let artifact = load_artifact(&uri, None).await.unwrap();
    assert_eq!(artifact.onnx, model_bytes());
    assert_eq!(artifact.card, Some(card()));
}

#[tokio::test]
async fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    let message = load_err(path_str(&missing), None).await;
    assert_eq!(
        message,
        format!("{} not found: no such file or directory", missing.display())
    );
}

#[tokio::test]
async fn malformed_card_is_an_error_naming_the_card() {
    let dir = model_dir(false);
    std::fs::write(dir.path().join("iris.card.json"), "{not json").unwrap();
    let message = load_err(path_str(&dir.path().join("iris.onnx")), None).await;
    let card = dir.path().join("iris.card.json");
    assert!(
        message.starts_with(&format!("malformed model card {}: ", card.display())),
        "{message}"
    );
}

#[tokio::test]
async fn sha256_is_verified_case_insensitively() {
    let dir = model_dir(false);
    let file = dir.path().join("iris.onnx");
    let good = sha256_hex(&model_bytes());
    load_artifact(path_str(&file), Some(&good.to_uppercase()))
        .await
        .unwrap();

    let wrong = "0".repeat(64);
    let message = load_err(path_str(&file), Some(&wrong)).await;
    assert_eq!(
        message,
        format!(
            "sha256 mismatch for {}: expected {wrong}, got {good}",
            file.display()
        )
    );

    let message = load_err(path_str(&file), Some("abc")).await;
    assert_eq!(message, "invalid sha256 \"abc\": expected 64 hex digits");
}

#[tokio::test]
async fn http_model_and_card() {
    let addr = start_http_server().await;
    let artifact = load_artifact(&format!("http://{addr}/m/iris.onnx"), None)
        .await
        .unwrap();
    assert_eq!(artifact.default_name, "iris");
    assert_eq!(artifact.onnx, model_bytes());
    assert_eq!(artifact.card, Some(card()));
}

#[tokio::test]
async fn http_redirects_are_followed() {
    let addr = start_http_server().await;
    let sha = sha256_hex(&model_bytes());
    let artifact = load_artifact(&format!("http://{addr}/moved/iris.onnx"), Some(&sha))
        .await
        .unwrap();
    assert_eq!(artifact.onnx, model_bytes());
    // The card is looked for beside the URL the user gave; there is none there.
    assert_eq!(artifact.card, None);
}

#[tokio::test]
async fn http_errors_name_the_url_and_status() {
    let addr = start_http_server().await;
    let message = load_err(&format!("http://{addr}/missing.onnx"), None).await;
    assert_eq!(
        message,
        format!("GET http://{addr}/missing.onnx returned 404 Not Found")
    );

    let message = load_err(&format!("http://{addr}/private/iris.onnx"), None).await;
    assert_eq!(
        message,
        format!("GET http://{addr}/private/iris.onnx returned 403 Forbidden")
    );

    let message = load_err(&format!("http://{addr}/bad/iris.onnx"), None).await;
    assert!(
        message.starts_with(&format!(
            "malformed model card http://{addr}/bad/iris.card.json: "
        )),
        "{message}"
    );
}

#[tokio::test]
async fn http_connection_refused_is_named() {
    let port = closed_port();
    // Refused is transient: one try here; the retries have their own tests (fetch_retries.rs).
    let options = SourceOptions {
        retry: RetryPolicy::none(),
        ..SourceOptions::default()
    };
    let message = load_artifact_with(
        &format!("http://127.0.0.1:{port}/iris.onnx"),
        None,
        &options,
    )
    .await
    .expect_err("refused")
    .to_string();
    assert!(
        message.starts_with(&format!("cannot read http://127.0.0.1:{port}/iris.onnx: ")),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
}

#[tokio::test]
async fn http_errors_hide_credentials() {
    let addr = start_http_server().await;
    let uri = format!("http://user:hunter2@{addr}/missing.onnx?X-Amz-Signature=s3cr3t");
    let message = load_err(&uri, None).await;
    assert!(
        !message.contains("hunter2") && !message.contains("s3cr3t"),
        "{message}"
    );
    assert!(message.contains("404 Not Found"), "{message}");
}

#[tokio::test]
async fn fetch_writes_model_and_card_into_a_new_directory() {
    let addr = start_http_server().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("models/nested");
    let sha = sha256_hex(&model_bytes());
    let path = fetch_to_dir(&format!("http://{addr}/m/iris.onnx"), &dir, Some(&sha))
        .await
        .unwrap();
    assert_eq!(path, dir.join("iris.onnx"));
    assert_eq!(std::fs::read(&path).unwrap(), model_bytes());
    assert_eq!(
        std::fs::read_to_string(dir.join("iris.card.json")).unwrap(),
        CARD
    );
    assert_eq!(dir_listing(&dir), ["iris.card.json", "iris.onnx"]);

    // What the fetched directory holds is a model source itself.
    let artifact = load_artifact(path_str(&dir), Some(&sha)).await.unwrap();
    assert_eq!(artifact.card, Some(card()));
}

#[tokio::test]
async fn fetch_with_wrong_sha256_leaves_nothing_behind() {
    let dir = model_dir(true);
    let out = tempfile::tempdir().unwrap();
    let wrong = "f".repeat(64);
    let err = fetch_to_dir(
        path_str(&dir.path().join("iris.onnx")),
        out.path(),
        Some(&wrong),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SourceError::ChecksumMismatch { .. }), "{err}");
    assert_eq!(dir_listing(out.path()), Vec::<String>::new());
}

#[tokio::test]
async fn fetch_keeps_a_file_that_already_has_the_digest() {
    use std::os::unix::fs::MetadataExt;
    let dir = model_dir(false);
    let out = tempfile::tempdir().unwrap();
    let sha = sha256_hex(&model_bytes());
    let uri = dir.path().join("iris.onnx");
    let path = fetch_to_dir(path_str(&uri), out.path(), Some(&sha))
        .await
        .unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();

    let again = fetch_to_dir_with(
        path_str(&uri),
        out.path(),
        Some(&sha),
        &SourceOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(again.sha256, sha);
    assert_eq!(again.size, model_bytes().len() as u64);
    // A copy would have been renamed over it: a new inode.
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
}

#[tokio::test]
async fn builtin_models_load_and_fetch_with_their_card() {
    let artifact = load_artifact("builtin://iris", None).await.unwrap();
    assert_eq!(artifact.default_name, "iris");
    assert_eq!(artifact.origin, "builtin://iris");
    let card = artifact.card.expect("iris has a card");
    assert_eq!(card.class_labels, ["setosa", "versicolor", "virginica"]);

    let out = tempfile::tempdir().unwrap();
    let path = fetch_to_dir(
        "builtin://iris",
        out.path(),
        Some(&sha256_hex(&artifact.onnx)),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), artifact.onnx);
    assert_eq!(dir_listing(out.path()), ["iris.card.json", "iris.onnx"]);
    let again = load_artifact(path_str(out.path()), None).await.unwrap();
    assert_eq!(again.card.unwrap(), card);
}

#[tokio::test]
async fn unknown_builtin_lists_the_available_ones() {
    let message = load_err("builtin://nope", None).await;
    assert_eq!(
        message,
        "unknown builtin model builtin://nope: available are iris, iris-rf, diabetes"
    );
}

#[tokio::test]
async fn unsupported_schemes_are_rejected() {
    let message = load_err("gs://bucket/iris.onnx", None).await;
    assert!(
        message.starts_with("unsupported model URI gs://bucket/iris.onnx"),
        "{message}"
    );
}

/// All S3 cases share one moto server, stopped when the test ends.
#[tokio::test]
async fn s3_against_moto() {
    let moto = match Moto::start() {
        Ok(moto) => moto,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let model = model_bytes();
    let sha = sha256_hex(&model);
    moto.put(
        "models",
        &[
            ("team/iris.onnx", model.clone()),
            ("team/iris.card.json", CARD.as_bytes().to_vec()),
            ("two/a.onnx", b"a".to_vec()),
            ("two/b.onnx", b"b".to_vec()),
            ("bad/iris.onnx", model.clone()),
            ("bad/iris.card.json", b"{not json".to_vec()),
        ],
    )
    .await;
    let options = SourceOptions {
        s3: moto.s3_options(),
        ..SourceOptions::default()
    };

    // A key, with its card and checksum.
    let artifact = load_artifact_with("s3://models/team/iris.onnx", Some(&sha), &options)
        .await
        .unwrap();
    assert_eq!(artifact.default_name, "iris");
    assert_eq!(artifact.origin, "s3://models/team/iris.onnx");
    assert_eq!(artifact.onnx, model);
    assert_eq!(artifact.card, Some(card()));

    // A prefix holding one model.
    let artifact = load_artifact_with("s3://models/team/", None, &options)
        .await
        .unwrap();
    assert_eq!(artifact.origin, "s3://models/team/iris.onnx");

    // Fetching into a directory.
    let out = tempfile::tempdir().unwrap();
    let fetched = fetch_to_dir_with(
        "s3://models/team/iris.onnx",
        out.path(),
        Some(&sha),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        fetched,
        Fetched {
            path: out.path().join("iris.onnx"),
            card: Some(out.path().join("iris.card.json")),
            size: model.len() as u64,
            sha256: sha.clone(),
        }
    );
    assert_eq!(std::fs::read(&fetched.path).unwrap(), model);
    assert_eq!(dir_listing(out.path()), ["iris.card.json", "iris.onnx"]);

    // Errors name the object and the cause, in one line.
    let err = |uri: &'static str, sha: Option<&'static str>| {
        let options = options.clone();
        async move {
            let message = load_artifact_with(uri, sha, &options)
                .await
                .expect_err(uri)
                .to_string();
            assert!(!message.contains('\n'), "{message}");
            message
        }
    };
    let message = err("s3://models/team/missing.onnx", None).await;
    assert_eq!(
        message,
        "s3://models/team/missing.onnx not found: 404 Not Found: NoSuchKey: The specified key does not exist."
    );
    let message = err("s3://no-such-bucket/iris.onnx", None).await;
    assert!(
        message.starts_with("s3://no-such-bucket/iris.onnx not found: "),
        "{message}"
    );
    assert!(message.contains("NoSuchBucket"), "{message}");
    let message = err("s3://models/two/", None).await;
    assert_eq!(
        message,
        "several *.onnx models in s3://models/two/ (a.onnx, b.onnx): point the URI at one of them"
    );
    let message = err("s3://models/empty/", None).await;
    assert_eq!(message, "no *.onnx model in s3://models/empty/");
    let message = err("s3://models/bad/iris.onnx", None).await;
    assert!(
        message.starts_with("malformed model card s3://models/bad/iris.card.json: "),
        "{message}"
    );
    let wrong = "0".repeat(64);
    let message = load_artifact_with("s3://models/team/iris.onnx", Some(&wrong), &options)
        .await
        .unwrap_err();
    assert_eq!(
        message.to_string(),
        format!("sha256 mismatch for s3://models/team/iris.onnx: expected {wrong}, got {sha}")
    );

    // Credentials never show in errors.
    let message = err("s3://models/team/missing.onnx", None).await;
    assert!(
        !message.contains(S3_SECRET_KEY) && !message.contains(S3_ACCESS_KEY),
        "{message}"
    );
}

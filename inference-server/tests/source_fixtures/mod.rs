//! Fixtures for the model-source tests: model bytes, a small HTTP server and a moto S3
//! server, all on 127.0.0.1.
#![allow(dead_code)] // each test binary uses a part

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// Stand-in model bytes: the source layer never parses ONNX. Large enough to arrive in
/// several chunks.
pub fn model_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

pub const CARD: &str = r#"{"title":"Iris","class_labels":["setosa","versicolor","virginica"]}"#;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Serves, on 127.0.0.1:
/// - `/m/iris.onnx` and its card `/m/iris.card.json`;
/// - `/moved/iris.onnx`: 302 to `/m/iris.onnx`;
/// - `/bad/iris.onnx` with a card that is not JSON;
/// - `/private/iris.onnx`: 403; anything else: 404.
pub async fn start_http_server() -> SocketAddr {
    let app = Router::new()
        .route("/m/iris.onnx", get(|| async { model_bytes() }))
        .route(
            "/m/iris.card.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], CARD) }),
        )
        .route(
            "/moved/iris.onnx",
            get(|| async { Redirect::to("/m/iris.onnx") }),
        )
        .route("/bad/iris.onnx", get(|| async { model_bytes() }))
        .route("/bad/iris.card.json", get(|| async { "{not json" }))
        .route(
            "/private/iris.onnx",
            get(|| async { StatusCode::FORBIDDEN.into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A loopback port that nothing listens on.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `moto_server` on 127.0.0.1, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

pub const S3_ACCESS_KEY: &str = "modelship-test-key";
pub const S3_SECRET_KEY: &str = "modelship-test-secret";
pub const S3_REGION: &str = "us-east-1";

impl Moto {
    /// Starts moto from the project's venv, or says why it cannot.
    pub fn start() -> Result<Self, String> {
        let venv = std::env::var_os("MODELSHIP_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
        let moto = venv.join("bin/moto_server");
        if !moto.exists() {
            return Err(format!(
                "{} is missing (run scripts/setup-python.sh)",
                moto.display()
            ));
        }
        let port = closed_port();
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", moto.display()))?;
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                return Err(format!("moto_server exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err("moto_server did not listen within 60 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    /// object_store settings that point at this server.
    pub fn s3_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", S3_ACCESS_KEY),
            ("aws_secret_access_key", S3_SECRET_KEY),
            ("aws_region", S3_REGION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The same settings as environment variables, for a child process.
    pub fn s3_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_string()),
            ("AWS_REGION", S3_REGION.to_string()),
        ]
    }

    /// Creates `bucket` and puts `objects` (key, body) into it. moto does not check
    /// signatures, so plain path-style PUTs do.
    pub async fn put(&self, bucket: &str, objects: &[(&str, Vec<u8>)]) {
        let client = reqwest::Client::new();
        let status = client
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "create bucket {bucket}: {status}");
        for (key, body) in objects {
            let url = format!("{}/{bucket}/{key}", self.endpoint);
            let status = client
                .put(&url)
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "put {url}: {status}");
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto, or `None` after saying why it cannot run; under `REQUIRE_NO_SKIP=1` (`make test`)
/// a missing moto fails the test instead.
pub fn moto_or_skip() -> Option<Moto> {
    match Moto::start() {
        Ok(moto) => Some(moto),
        Err(reason) if std::env::var_os("REQUIRE_NO_SKIP").is_some_and(|v| v == "1") => {
            panic!("moto is required (REQUIRE_NO_SKIP=1): {reason}")
        }
        Err(reason) => {
            println!("skipped: {reason}");
            None
        }
    }
}

/// Names in `dir`, sorted: proves what a fetch left behind (no partial files).
pub fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

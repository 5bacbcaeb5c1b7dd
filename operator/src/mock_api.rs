//! A mock API server for fast tests, after kube's `tower-test` pattern: a [`kube::Client`]
//! whose every request a test's scenario receives, checks (method, path, query, body) and
//! answers, in order. Test-only; nothing here talks to a network.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{self, Handle};

/// The scenario's end of the client.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A client and the mock API server it talks to.
pub fn client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

/// One request as the API server received it.
#[derive(Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// The JSON body, `Null` when there is none.
    pub body: Value,
}

impl Received {
    /// Asserts a server-side apply with the operator's field manager that takes over conflicts.
    pub fn assert_server_side_apply(&self) {
        assert_eq!(self.method, Method::PATCH, "{}", self.path);
        assert_eq!(
            self.query.get("fieldManager").map(String::as_str),
            Some("modelship-operator"),
            "{}",
            self.path
        );
        assert_eq!(
            self.query.get("force").map(String::as_str),
            Some("true"),
            "{}",
            self.path
        );
    }
}

/// How long a scenario waits for the next request before it fails the test.
const PATIENCE: Duration = Duration::from_secs(10);

impl ApiServer {
    /// Receives the next request, checks its method and path, and answers `status` with `reply`
    /// computed from the request.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        reply: impl FnOnce(&Received) -> (StatusCode, Value),
    ) -> Received {
        let next = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"));
        let (request, respond) =
            next.unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await.expect("request body").to_bytes();
        let received = Received {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("JSON request body")
            },
        };
        assert_eq!(
            (received.method.as_str(), received.path.as_str()),
            (method.as_str(), path),
            "unexpected request {received:?}"
        );
        let (status, body) = reply(&received);
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        respond.send_response(response);
        received
    }

    /// Asserts that no request is left: every client was dropped without sending another.
    pub async fn done(mut self) {
        let next = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .expect("a client is still alive; drop every clone of it");
        if let Some((request, _)) = next {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// A reply that echoes the request's body, as an API server does for a create or an apply.
pub fn echo(received: &Received) -> (StatusCode, Value) {
    (StatusCode::OK, received.body.clone())
}

/// A `Status` reply with `code`, as the API server sends for errors.
pub fn status(code: StatusCode) -> (StatusCode, Value) {
    (
        code,
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": code.canonical_reason().unwrap_or("error"),
            "reason": code.canonical_reason().unwrap_or("error").replace(' ', ""),
            "code": code.as_u16(),
        }),
    )
}

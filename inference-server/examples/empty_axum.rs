//! The benchmark's ceiling for HTTP overhead: an axum server whose infer
//! route does no work at all. `make bench-server` compares modelship's
//! request rate against this one on the same machine and load.
//!
//! Usage: `empty_axum PORT` (binds 127.0.0.1).

use axum::Router;
use axum::routing::post;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8090);
    let app = Router::new().route(
        "/v2/models/{name}/infer",
        post(|| async { ([("content-type", "application/json")], "{}") }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}

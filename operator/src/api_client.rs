//! The operator's Kubernetes client: kube's own stack (TLS from the kubeconfig or the pod's
//! service account, the credentials, the base URI, kube's retry of 429/503/504, its connect,
//! read and write timeouts), over a TCP connector of our own that bounds how long a
//! connection may sit on unacknowledged data.
//!
//! Why: when the network to the API server is cut (a partition: packets dropped, not
//! refused), a request already written sits in the kernel's send queue and is retransmitted
//! for as long as `net.ipv4.tcp_retries2` allows (about 15 minutes), even after the process
//! has closed the socket. Leader election ends the process at its renew deadline, but the
//! kernel could still deliver such a write once the network returns, after another replica
//! took the Lease. `TCP_USER_TIMEOUT` aborts a connection whose data stays unacknowledged
//! that long; set to the Lease's duration minus the renew deadline, a write queued before the
//! renew deadline is dropped by the kernel before the Lease can pass (docs/reliability.md).
//! TCP keepalive on idle connections (watches) finds a dead peer within about
//! `KEEPALIVE_IDLE` + the user timeout.

use std::time::Duration;

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ConfigExt, retry::RetryPolicy};
use kube::{Client, Config};
use tower::ServiceBuilder;
use tower::retry::RetryLayer;

/// Idle time before a connection's first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// `TCP_USER_TIMEOUT` for a Lease of `lease` renewed within `renew_deadline`: what is left
/// of the Lease after the deadline (at least 1 s).
pub fn user_timeout(lease: Duration, renew_deadline: Duration) -> Duration {
    lease
        .saturating_sub(renew_deadline)
        .max(Duration::from_secs(1))
}

/// The TCP connector: keepalive, no Nagle, `user_timeout` on every connection.
pub fn tcp_connector(user_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    // The scheme is for the TLS layer above to judge.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(KEEPALIVE_IDLE));
    http.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    http.set_tcp_user_timeout(Some(user_timeout));
    http
}

/// A client for `config` over [`tcp_connector`]. A proxy in the kubeconfig is refused: the
/// operator talks to its API server directly.
pub fn client(config: Config, user_timeout: Duration) -> Result<Client, kube::Error> {
    if let Some(proxy) = &config.proxy_url {
        return Err(kube::Error::ProxyProtocolUnsupported {
            proxy_url: Box::new(proxy.clone()),
        });
    }
    let https = config.rustls_https_connector_with_connector(tcp_connector(user_timeout))?;
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::Service;

    #[test]
    fn the_user_timeout_is_what_the_lease_leaves_after_the_renew_deadline() {
        let lease = Duration::from_secs(15);
        assert_eq!(user_timeout(lease, lease * 2 / 3), Duration::from_secs(5));
        assert_eq!(user_timeout(lease, lease), Duration::from_secs(1));
    }

    /// The connector's sockets carry the options, read back from the kernel.
    #[tokio::test]
    async fn every_connection_has_the_user_timeout_and_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connector = tcp_connector(Duration::from_millis(5_000));
        let uri: http::Uri = format!("http://{addr}").parse().unwrap();
        let (connected, accepted) = tokio::join!(connector.call(uri), listener.accept());
        let (stream, _) = (connected.unwrap(), accepted.unwrap());
        let socket = socket2::SockRef::from(stream.inner());
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(5_000))
        );
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert!(socket.tcp_nodelay().unwrap());
    }

    /// A client built over the connector speaks to a server (plain HTTP here).
    #[tokio::test]
    async fn the_client_reaches_an_api_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/version",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({
                    "major": "1", "minor": "34", "gitVersion": "v1.34.0", "gitCommit": "",
                    "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "",
                    "platform": "linux/amd64"}))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = Config::new(format!("http://{addr}").parse().unwrap());
        let client = client(config, Duration::from_secs(5)).unwrap();
        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.git_version, "v1.34.0");
    }
}

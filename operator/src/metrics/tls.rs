//! TLS of the operator's metrics port (`--metrics-secure`).
//!
//! The certificate is `tls.crt` and `tls.key` (PEM) of `--metrics-cert-dir`, a mounted
//! Secret in the chart (read once at start, not watched), or, without a directory, a
//! self-signed one made at start for `localhost`, `127.0.0.1`, `::1`, the host (pod) name
//! and `--metrics-cert-san` (the chart passes the metrics Service's DNS names). A scraper
//! then skips verification, or checks against the Secret's CA.
//!
//! [`TlsListener`] hands TLS streams to `axum::serve`: handshakes run in tasks of their own,
//! each bounded by [`HANDSHAKE_TIMEOUT`] and at most [`MAX_HANDSHAKES`] at once, so a client
//! that connects and says nothing holds up nobody else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes under way at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 64;

/// Where the certificate came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Dir(String),
    SelfSigned { names: Vec<String> },
}

impl std::fmt::Display for CertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertSource::Dir(dir) => write!(f, "{dir}/tls.crt"),
            CertSource::SelfSigned { names } => {
                write!(f, "self-signed for {}", names.join(", "))
            }
        }
    }
}

/// The rustls configuration of the metrics port: the certificate from `cert_dir`, else a
/// self-signed one for the default names and `extra_names`.
pub fn server_config(
    cert_dir: Option<&Path>,
    extra_names: &[String],
) -> anyhow::Result<(ServerConfig, CertSource)> {
    let (chain, key, source) = match cert_dir {
        Some(dir) => {
            let (chain, key) = read_pem_dir(dir)?;
            (chain, key, CertSource::Dir(dir.display().to_string()))
        }
        None => {
            let names = self_signed_names(extra_names, host_name().as_deref());
            let (chain, key) = self_signed(&names)?;
            (chain, key, CertSource::SelfSigned { names })
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the metrics certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, source))
}

/// `tls.crt` (the chain, leaf first) and `tls.key` of a `kubernetes.io/tls` Secret's files.
pub fn read_pem_dir(
    dir: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let crt = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let chain = CertificateDer::pem_file_iter(&crt)
        .with_context(|| format!("cannot read {}", crt.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM certificates", crt.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", crt.display());
    let key = PrivateKeyDer::from_pem_file(&key)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    Ok((chain, key))
}

/// The names of a self-signed certificate: loopback, the host name, then `extra` (blank
/// ones dropped, each once).
pub fn self_signed_names(extra: &[String], host: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for name in host.into_iter().chain(extra.iter().map(String::as_str)) {
        let name = name.trim();
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// A self-signed certificate (ECDSA P-256) for `names`: DNS names, or IP addresses.
pub fn self_signed(
    names: &[String],
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .context("cannot make a self-signed certificate")?;
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
    Ok((vec![made.cert.der().clone()], key.into()))
}

fn host_name() -> Option<String> {
    std::env::var("POD_NAME").ok().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
    })
}

/// Accepted TLS connections for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`, with `config`'s certificate.
    pub fn new(listener: TcpListener, config: ServerConfig) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (ready_tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            ready_tx,
        ));
        Ok(Self {
            ready,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(turn) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = tokio::select! {
            _ = ready.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // As axum's own listener: out of file descriptors and the like pass.
                    tracing::debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (tls, ready) = (tls.clone(), ready.clone());
        tokio::spawn(async move {
            let _turn = turn;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "metrics: TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ends only when this listener goes: wait for that.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_names_start_with_loopback_and_keep_each_name_once() {
        let extra = vec![
            "modelship-metrics.ns.svc".to_string(),
            " ".to_string(),
            "localhost".to_string(),
            "op-0".to_string(),
        ];
        assert_eq!(
            self_signed_names(&extra, Some("op-0")),
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "op-0",
                "modelship-metrics.ns.svc"
            ]
        );
    }

    #[test]
    fn a_self_signed_certificate_makes_a_server_config() {
        let (config, source) = server_config(None, &["svc.ns.svc".into()]).unwrap();
        assert!(
            matches!(&source, CertSource::SelfSigned { names } if names.contains(&"svc.ns.svc".to_string())),
            "{source:?}"
        );
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let (chain, _) = self_signed(&self_signed_names(&[], None)).unwrap();
        assert_eq!(chain.len(), 1);
    }

    #[test]
    fn a_certificate_dir_as_a_tls_secret_mounts_it_loads() {
        let made = rcgen::generate_simple_self_signed(vec!["svc.ns.svc".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), made.signing_key.serialize_pem()).unwrap();
        let (_, source) = server_config(Some(dir.path()), &[]).unwrap();
        assert_eq!(source, CertSource::Dir(dir.path().display().to_string()));
        // A key that is not the certificate's is refused at start, not at the first scrape.
        let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
        std::fs::write(
            dir.path().join("tls.key"),
            other.signing_key.serialize_pem(),
        )
        .unwrap();
        let e = server_config(Some(dir.path()), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("do not fit together"), "{e:#}");
    }

    #[test]
    fn a_missing_or_empty_certificate_dir_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = server_config(Some(dir.path()), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("tls.crt"), "{e:#}");
        std::fs::write(dir.path().join("tls.crt"), "not pem\n").unwrap();
        std::fs::write(dir.path().join("tls.key"), "").unwrap();
        let e = server_config(Some(dir.path()), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("holds no certificate"), "{e:#}");
    }

    /// A TLS client that trusts only `ca_pem`, for `localhost`.
    fn client_for(ca_pem: &str) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    async fn get_over_tls(
        connector: &tokio_rustls::TlsConnector,
        addr: SocketAddr,
        path: &str,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn the_listener_serves_https_while_a_silent_client_holds_a_handshake() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), made.signing_key.serialize_pem()).unwrap();
        let (config, _) = server_config(Some(dir.path()), &[]).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, config).unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let server = tokio::spawn(
            axum::serve(listener, crate::metrics::router(metrics, None)).into_future(),
        );
        // Connected, and silent: its handshake waits in a task of its own.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let connector = client_for(&made.cert.pem());
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            get_over_tls(&connector, addr, "/healthz"),
        )
        .await
        .expect("answered while another handshake is pending");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("ok"), "{response}");
        // Plain HTTP on the TLS port gets no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        // A client that trusts another CA refuses the certificate.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let stranger = client_for(&other.cert.pem());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        assert!(stranger.connect(name, tcp).await.is_err());
        server.abort();
    }
}

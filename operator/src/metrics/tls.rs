//! TLS of the operator's metrics port (`--metrics-secure`).
//!
//! The certificate is `tls.crt` and `tls.key` (PEM) of `--metrics-cert-dir`, a mounted
//! Secret in the chart, loaded at start (a bad pair stops the operator) and read again when
//! the Secret is renewed ([`reload`]: the files' content is compared at most every
//! [`CERT_RECHECK`], on a handshake), or, without a directory, a self-signed one made at
//! start for `localhost`, `127.0.0.1`, `::1`, the host (pod) name and `--metrics-cert-san`
//! (the chart passes the metrics Service's DNS names). A scraper then skips verification, or
//! checks against the Secret's CA.
//!
//! [`TlsListener`] hands TLS streams to `axum::serve`: handshakes run in tasks of their own,
//! each bounded by [`HANDSHAKE_TIMEOUT`] and at most [`MAX_HANDSHAKES`] at once, so a client
//! that connects and says nothing holds up nobody else.

mod reload;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use reload::{ReloadingCert, read_pem_dir};

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes under way at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 64;
/// Least time between two reads of `--metrics-cert-dir`'s files. The kubelet brings a
/// renewed Secret into the pod within a minute or two, so this adds little to that.
pub const CERT_RECHECK: Duration = Duration::from_secs(10);

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

/// The rustls configuration of the metrics port: the certificate from `cert_dir` (re-read on
/// change), else a self-signed one for the default names and `extra_names`.
pub fn server_config(
    cert_dir: Option<&Path>,
    extra_names: &[String],
) -> anyhow::Result<(ServerConfig, CertSource)> {
    server_config_rechecking(cert_dir, extra_names, CERT_RECHECK)
}

/// [`server_config`], with the files of `cert_dir` looked at again at most every `recheck`.
pub fn server_config_rechecking(
    cert_dir: Option<&Path>,
    extra_names: &[String],
    recheck: Duration,
) -> anyhow::Result<(ServerConfig, CertSource)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth();
    let (mut config, source) = match cert_dir {
        Some(dir) => {
            let resolver = ReloadingCert::load(dir, recheck, provider)?;
            (
                builder.with_cert_resolver(Arc::new(resolver)),
                CertSource::Dir(dir.display().to_string()),
            )
        }
        None => {
            let names = self_signed_names(extra_names, host_name().as_deref());
            let (chain, key) = self_signed(&names)?;
            let config = builder
                .with_single_cert(chain, key)
                .context("the metrics certificate and key do not fit together")?;
            (config, CertSource::SelfSigned { names })
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, source))
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
    use std::time::Instant;

    use rustls::pki_types::pem::PemObject;

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

    /// Writes a certificate into `dir` as the kubelet mounts a Secret: `tls.crt` and `tls.key`
    /// are links through `..data` into a directory of that version, and a renewal writes a new
    /// directory and swaps `..data` in one rename.
    fn mount_secret(dir: &Path, version: u32, crt: &str, key: &str) {
        let data = format!("..2026_12_02_v{version}");
        std::fs::create_dir(dir.join(&data)).unwrap();
        std::fs::write(dir.join(&data).join("tls.crt"), crt).unwrap();
        std::fs::write(dir.join(&data).join("tls.key"), key).unwrap();
        std::os::unix::fs::symlink(&data, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        for name in ["tls.crt", "tls.key"] {
            if std::fs::symlink_metadata(dir.join(name)).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
            }
        }
    }

    /// The certificate the server presents to a client that trusts only `ca_pem`; `None` when
    /// that client refuses it.
    async fn served_to(ca_pem: &str, addr: SocketAddr) -> Option<Vec<u8>> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = client_for(ca_pem).connect(name, tcp).await.ok()?;
        Some(tls.get_ref().1.peer_certificates()?[0].to_vec())
    }

    /// The certificate served at `addr` is `now_der` (trusted through `now_pem`), and a client
    /// trusting only `not_pem` is refused.
    async fn assert_serves(addr: SocketAddr, now_pem: &str, now_der: &[u8], not_pem: &str) {
        assert_eq!(served_to(now_pem, addr).await, Some(now_der.to_vec()));
        assert_eq!(served_to(not_pem, addr).await, None);
    }

    #[tokio::test]
    async fn a_renewed_secret_is_served_from_the_next_handshake_on() {
        let recheck = Duration::from_millis(200);
        let make = || rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (first, second, third) = (make(), make(), make());
        let dir = tempfile::tempdir().unwrap();
        let mount = |version, crt: &rcgen::Certificate, key: &rcgen::KeyPair| {
            mount_secret(dir.path(), version, &crt.pem(), &key.serialize_pem())
        };
        mount(1, &first.cert, &first.signing_key);
        let (config, _) = server_config_rechecking(Some(dir.path()), &[], recheck).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, config).unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let server = tokio::spawn(
            axum::serve(listener, crate::metrics::router(metrics, None)).into_future(),
        );
        let (first_pem, second_pem, third_pem) =
            (first.cert.pem(), second.cert.pem(), third.cert.pem());
        assert_serves(addr, &first_pem, first.cert.der(), &second_pem).await;

        // Renewed: served once the recheck period has passed, the old one no longer.
        mount(2, &second.cert, &second.signing_key);
        let started = Instant::now();
        while served_to(&second_pem, addr).await.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the renewed certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_serves(addr, &second_pem, second.cert.der(), &first_pem).await;

        // A renewal whose key is not the certificate's is not taken: the second stays...
        mount(3, &third.cert, &second.signing_key);
        tokio::time::sleep(recheck * 2).await;
        assert_serves(addr, &second_pem, second.cert.der(), &third_pem).await;
        // ...until a pair that fits comes.
        mount(4, &third.cert, &third.signing_key);
        tokio::time::sleep(recheck * 2).await;
        assert_eq!(
            served_to(&third_pem, addr).await,
            Some(third.cert.der().to_vec())
        );
        server.abort();
    }
}

//! The metrics certificate of `--metrics-cert-dir`, read again when its files change.
//!
//! A mounted Secret is renewed in place: the kubelet writes the new files into a fresh
//! directory and swaps the `..data` symlink, so `tls.crt` and `tls.key` change together and
//! the paths stay the same (an inotify watch on the old files would see nothing). So the
//! content is what is compared: on a handshake at least [`super::CERT_RECHECK`] after the
//! last look, both files are read and hashed; new content is parsed and, when the key fits the
//! certificate, served from that handshake on. Content that does not make a certificate (a
//! directory written file by file, caught half-way) is reported once and the previous
//! certificate kept; it is tried again when the content changes again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// `tls.crt` and `tls.key` as read, and the hash of the two.
struct Files {
    crt: Vec<u8>,
    key: Vec<u8>,
    digest: [u8; 32],
}

impl Files {
    fn read(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        };
        let (crt, key) = (read("tls.crt")?, read("tls.key")?);
        let mut hash = Sha256::new();
        hash.update((crt.len() as u64).to_le_bytes());
        hash.update(&crt);
        hash.update(&key);
        Ok(Self {
            crt,
            key,
            digest: hash.finalize().into(),
        })
    }

    /// The chain (leaf first) and key they hold, `dir` naming them in errors.
    fn parse(
        &self,
        dir: &Path,
    ) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let chain = CertificateDer::pem_slice_iter(&self.crt)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not PEM certificates", crt.display()))?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", crt.display());
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .with_context(|| format!("{} holds no PEM private key", key.display()))?;
        Ok((chain, key))
    }

    fn certified_key(&self, dir: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
        let (chain, key) = self.parse(dir)?;
        CertifiedKey::from_der(chain, key, provider)
            .context("the metrics certificate and key do not fit together")
    }
}

/// Reads `tls.crt` (the chain, leaf first) and `tls.key` of a `kubernetes.io/tls` Secret's files.
pub fn read_pem_dir(
    dir: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    Files::read(dir)?.parse(dir)
}

/// A [`ResolvesServerCert`] that serves the directory's certificate, re-read on change.
#[derive(Debug)]
pub struct ReloadingCert {
    dir: PathBuf,
    recheck: Duration,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    /// The hash of the content last looked at, served or not.
    seen: [u8; 32],
    checked: Instant,
}

impl ReloadingCert {
    /// Loads the directory's certificate now: an error if it does not make one.
    pub fn load(
        dir: &Path,
        recheck: Duration,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let files = Files::read(dir)?;
        let current = Arc::new(files.certified_key(dir, &provider)?);
        Ok(Self {
            dir: dir.to_path_buf(),
            recheck,
            provider,
            state: Mutex::new(State {
                current,
                seen: files.digest,
                checked: Instant::now(),
            }),
        })
    }

    /// Reads the files again; new content that makes a certificate replaces the current one.
    fn refresh(&self, state: &mut State) {
        state.checked = Instant::now();
        let files = match Files::read(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "metrics certificate: keeping the current one");
                return;
            }
        };
        if files.digest == state.seen {
            return;
        }
        state.seen = files.digest;
        match files.certified_key(&self.dir, &self.provider) {
            Ok(key) => {
                state.current = Arc::new(key);
                tracing::info!(dir = %self.dir.display(), "metrics certificate changed: serving the new one");
            }
            Err(e) => tracing::warn!(
                dir = %self.dir.display(),
                error = %format!("{e:#}"),
                "metrics certificate changed but cannot be used: still serving the previous one"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Two small files, read at most once per recheck period, under a lock no one holds long.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= self.recheck {
            self.refresh(&mut state);
        }
        Some(state.current.clone())
    }
}

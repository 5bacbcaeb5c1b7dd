//! API keys (`--api-keys-dir`): which keys are valid, read from a directory
//! of files (a mounted Kubernetes Secret: one file per key, its name the
//! key's label), re-read every [`RELOAD_INTERVAL`] so a rotated Secret takes
//! effect without a restart, and the one check both protocols make
//! ([`ApiKeys::check`]): a presented key against every valid one, in
//! constant time. Keys are never logged; only their labels are, and counted
//! in `modelship_auth_total{key, result}`.
//!
//! Fail closed: with a directory configured but no key in it (missing,
//! empty, unreadable), every protected request is refused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::metrics::{AuthLabels, Metrics};

/// How often the key directory is read again. The kubelet updates a mounted
/// Secret about a minute after it changes; this adds at most this much.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// One valid key and its label (the file name).
#[derive(Clone, PartialEq, Eq)]
struct Key {
    label: String,
    value: Vec<u8>,
}

/// The keys read from the directory at one moment, sorted by label.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// The keys' labels, sorted: what may be logged.
    pub fn labels(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.label.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The label of the key equal to `presented`. Every key is compared, each
    /// in constant time, so the answer's timing does not say which key (or
    /// how much of one) matched.
    fn find(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(&key.value, presented) && found.is_none() {
                found = Some(key.label.as_str());
            }
        }
        found
    }
}

/// Whether `a == b`, in a time that depends only on the lengths: every byte
/// is looked at whatever the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Reads every key in `dir`: each regular file (symlinks followed, as a
/// Secret volume's `KEY -> ..data/KEY` links are) is one key, its content
/// without the trailing newline. Names starting with `.` (the kubelet's
/// `..data` and `..2026_...` entries, dotfiles) and empty files are skipped.
pub fn read_keys(dir: &Path) -> std::io::Result<KeySet> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(label) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if label.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symlinks: a link to a file is a key, to a directory is not.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => continue,
        }
        let mut value = std::fs::read(&path)?;
        while matches!(value.last(), Some(b'\n' | b'\r')) {
            value.pop();
        }
        if value.is_empty() {
            tracing::warn!(key = %label, dir = %dir.display(), "API key file is empty; ignored");
            continue;
        }
        keys.push(Key { label, value });
    }
    keys.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(KeySet { keys })
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` or `X-API-Key` header.
    Missing,
    /// A key that is not one of the valid ones.
    Wrong,
    /// No valid key at all (the directory is missing or empty).
    NoKeys,
}

impl Refusal {
    /// The message of the 401 / UNAUTHENTICATED answer.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            }
            Refusal::Wrong => "the API key is not valid",
            Refusal::NoKeys => "no API key is configured on this server, so every key is refused",
        }
    }

    fn result(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Wrong | Refusal::NoKeys => "wrong",
        }
    }
}

/// The valid keys of a server, kept current from their directory.
pub struct ApiKeys {
    dir: PathBuf,
    current: RwLock<Arc<KeySet>>,
    metrics: Arc<Metrics>,
}

impl ApiKeys {
    /// Reads the keys in `dir` once; [`ApiKeys::watch`] keeps them current.
    pub fn load(dir: PathBuf, metrics: Arc<Metrics>) -> Arc<ApiKeys> {
        let keys = Arc::new(ApiKeys {
            dir,
            current: RwLock::new(Arc::new(KeySet::default())),
            metrics,
        });
        keys.reload_logged(true);
        keys
    }

    /// The keys as last read.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().expect("key set lock").clone()
    }

    /// Reads the directory again; returns whether the keys changed.
    pub fn reload(&self) -> bool {
        self.reload_logged(false)
    }

    fn reload_logged(&self, first: bool) -> bool {
        let read = read_keys(&self.dir);
        let new = match &read {
            Ok(set) => set.clone(),
            Err(_) => KeySet::default(),
        };
        let changed = *self.current() != new;
        if !(changed || first) {
            return false;
        }
        let dir = self.dir.display();
        match read {
            Err(e) => tracing::error!(%dir, error = %e,
                "cannot read the API key directory: every request to a protected route is refused"),
            Ok(_) if new.is_empty() => tracing::error!(%dir,
                "no API key in the API key directory: every request to a protected route is refused"),
            Ok(_) => tracing::info!(%dir, keys = ?new.labels(), "API keys loaded"),
        }
        *self.current.write().expect("key set lock") = Arc::new(new);
        changed
    }

    /// Re-reads the directory every `interval` for as long as the process runs.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let keys = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let keys = keys.clone();
                let _ = tokio::task::spawn_blocking(move || keys.reload()).await;
            }
        });
    }

    /// Checks the key a request presents: the token of `Authorization:
    /// Bearer TOKEN`, else `X-API-Key`. Counts the outcome; `Ok` is the
    /// matching key's label.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        x_api_key: Option<&[u8]>,
    ) -> Result<String, Refusal> {
        let keys = self.current();
        let outcome = match presented_key(authorization, x_api_key) {
            None => Err(Refusal::Missing),
            Some(_) if keys.is_empty() => Err(Refusal::NoKeys),
            Some(key) => keys.find(key).map(str::to_string).ok_or(Refusal::Wrong),
        };
        let (key, result) = match &outcome {
            Ok(label) => (label.clone(), "ok"),
            Err(refusal) => (String::new(), refusal.result()),
        };
        self.metrics
            .auth
            .get_or_create(&AuthLabels { key, result })
            .inc();
        outcome
    }
}

/// The key in `Authorization: Bearer KEY` (the scheme in any case), else in
/// `X-API-Key`; surrounding spaces are not part of it.
fn presented_key<'a>(
    authorization: Option<&'a [u8]>,
    x_api_key: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    let bearer = authorization.and_then(|v| {
        let v = v.trim_ascii();
        let (scheme, rest) = v.split_at_checked(7)?;
        scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| rest.trim_ascii())
    });
    bearer
        .or_else(|| x_api_key.map(<[u8]>::trim_ascii))
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A directory laid out as the kubelet mounts a Secret: the files in a
    /// timestamped directory, `..data` linking to it, one link per key.
    fn secret_volume(dir: &Path, generation: &str, keys: &[(&str, &str)]) {
        let data = dir.join(format!("..{generation}"));
        std::fs::create_dir(&data).unwrap();
        for (name, value) in keys {
            std::fs::write(data.join(name), value).unwrap();
        }
        let tmp = dir.join("..data_tmp");
        symlink(format!("..{generation}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        for (name, _) in keys {
            let link = dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
    }

    fn keys_in(dir: &Path) -> Arc<ApiKeys> {
        ApiKeys::load(dir.to_path_buf(), Arc::new(Metrics::new()))
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b""));
        // A key that is a prefix of another, or equal up to a NUL pad, is not it.
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }

    #[test]
    fn a_secret_volume_gives_one_key_per_file_without_kubelet_entries() {
        let dir = tempfile::tempdir().unwrap();
        secret_volume(
            dir.path(),
            "2026_12_01_21_00_00.1",
            &[("alice", "key-a\n"), ("bob", "key-b")],
        );
        std::fs::write(dir.path().join(".hidden"), "not-a-key").unwrap();
        let set = read_keys(dir.path()).unwrap();
        assert_eq!(set.labels(), ["alice", "bob"]);
        assert_eq!(set.find(b"key-a"), Some("alice"));
        assert_eq!(set.find(b"key-b"), Some("bob"));
        assert_eq!(set.find(b"key-a\n"), None);
        assert_eq!(set.find(b"not-a-key"), None);
    }

    #[test]
    fn a_rotated_secret_is_picked_up_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        secret_volume(dir.path(), "gen1", &[("app", "old-key")]);
        let keys = keys_in(dir.path());
        assert_eq!(keys.check(Some(b"Bearer old-key"), None), Ok("app".into()));
        assert!(!keys.reload(), "nothing changed");
        secret_volume(dir.path(), "gen2", &[("app", "new-key")]);
        assert!(keys.reload());
        assert_eq!(
            keys.check(Some(b"Bearer old-key"), None),
            Err(Refusal::Wrong)
        );
        assert_eq!(keys.check(None, Some(b"new-key")), Ok("app".into()));
    }

    #[test]
    fn no_keys_refuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let missing = keys_in(&dir.path().join("absent"));
        assert_eq!(missing.check(Some(b"Bearer x"), None), Err(Refusal::NoKeys));
        assert_eq!(missing.check(None, None), Err(Refusal::Missing));
        let empty = keys_in(dir.path());
        assert_eq!(empty.check(None, Some(b"")), Err(Refusal::Missing));
        std::fs::write(dir.path().join("blank"), "\n").unwrap();
        empty.reload();
        assert_eq!(empty.check(None, Some(b"\n")), Err(Refusal::Missing));
        assert_eq!(empty.check(None, Some(b"x")), Err(Refusal::NoKeys));
    }

    #[test]
    fn both_headers_are_read_and_counted_by_label() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ci"), "k1").unwrap();
        let keys = keys_in(dir.path());
        assert_eq!(keys.check(Some(b"bearer  k1 "), None), Ok("ci".into()));
        assert_eq!(keys.check(None, Some(b"k1")), Ok("ci".into()));
        assert_eq!(keys.check(Some(b"Basic k1"), None), Err(Refusal::Missing));
        assert_eq!(
            keys.check(Some(b"Bearer k2"), Some(b"k1")),
            Err(Refusal::Wrong)
        );
        let text = keys.metrics.encode();
        assert!(
            text.contains(r#"modelship_auth_total{variant="primary",key="ci",result="ok"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modelship_auth_total{variant="primary",key="",result="wrong"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("k1\""),
            "a key leaked into the metrics: {text}"
        );
    }
}

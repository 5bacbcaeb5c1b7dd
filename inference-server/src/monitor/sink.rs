//! The payload log: a bounded queue in front of one sink task. A request
//! only ever tries to enqueue: [`PayloadLog::admit`] drops a sampled
//! inference's events before anything is copied when the queue has no room,
//! [`PayloadLog::send`] drops what no longer fits; both count the drop. The
//! task renders and sends: to an `http(s)://` CloudEvents receiver
//! (`http_sink`: batches or one event per POST), or in batches to `s3://`
//! (one gzip JSON Lines object per batch, one PUT: whole or absent) or
//! `file://` (JSON Lines appended). [`PayloadLog::close`] flushes on shutdown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt};
use prometheus_client::metrics::counter::Counter;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::{LogMode, MonitorArgs};
use super::event::{Event, Kind};
use super::http_sink;
use crate::metrics::MonitorFamilies;

const FILE_FLUSH: Duration = Duration::from_millis(200);

/// Where events go.
pub enum Target {
    Http(reqwest::Url),
    File(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        prefix: String,
    },
}

impl Target {
    /// Reads `--payload-log`; the S3 client takes the `AWS_*` environment.
    pub fn parse(url: &str) -> Result<Target, String> {
        let shown = redact(url);
        let bad = |why: &str| format!("--payload-log {shown:?}: {why}");
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match parsed.scheme() {
            "http" | "https" => Ok(Target::Http(parsed)),
            "file" => parsed
                .to_file_path()
                .map(Target::File)
                .map_err(|()| bad("not a file path")),
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("no bucket"))?;
                let prefix = parsed.path().trim_matches('/').to_string();
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                let endpoint = std::env::var("AWS_ENDPOINT_URL")
                    .or_else(|_| std::env::var("AWS_ENDPOINT"))
                    .unwrap_or_default();
                if endpoint.to_ascii_lowercase().starts_with("http://") {
                    builder = builder.with_allow_http(true);
                }
                let store = builder.build().map_err(|e| bad(&e.to_string()))?;
                Ok(Target::S3 {
                    store: Arc::new(store),
                    prefix,
                })
            }
            other => Err(bad(&format!(
                "scheme {other}:// is not one of http, https, s3, file"
            ))),
        }
    }

    /// For log lines: the scheme and host, never a path's secrets or credentials.
    pub fn describe(&self) -> String {
        match self {
            Target::Http(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
            Target::File(p) => format!("file://{}", p.display()),
            Target::S3 { .. } => "s3".into(),
        }
    }
}

/// `url` without what may be a secret: user info and query string.
pub fn redact(url: &str) -> String {
    let (base, _query) = url.split_once('?').unwrap_or((url, ""));
    match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            match authority.rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => format!("{scheme}://{rest}"),
            }
        }
        None => base.to_string(),
    }
}

/// The queue and its sink task.
pub struct PayloadLog {
    tx: mpsc::Sender<Event>,
    pub mode: LogMode,
    sample_rate: f64,
    closing: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    counts: Counts,
    metrics: MonitorFamilies,
}

/// The counters each event ends in, looked up once: a family lookup hashes
/// the labels under a lock, too dear for every event at tens of thousands a second.
#[derive(Clone)]
pub(super) struct Counts {
    sent: [Counter; 3],
    dropped: [Counter; 3],
    queue_full: Counter,
    sink_error: Counter,
    truncated: [Counter; 3],
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Request => 0,
        Kind::Response => 1,
        Kind::Feedback => 2,
    }
}

impl Counts {
    pub(super) fn new(m: &MonitorFamilies) -> Counts {
        // One lookup per statement (or closure call): `get_or_create` returns
        // a read guard of the family's lock, a temporary lives to the end of
        // its statement, and a second lookup that creates would deadlock.
        let event = |kind: Kind, result: &'static str| -> Counter {
            m.payload_events
                .get_or_create(&[("type", kind.label()), ("result", result)])
                .clone()
        };
        let reason = |reason: &'static str| -> Counter {
            m.payload_dropped
                .get_or_create(&[("reason", reason)])
                .clone()
        };
        let truncated = |kind: Kind| -> Counter {
            m.payload_truncated
                .get_or_create(&[("type", kind.label())])
                .clone()
        };
        let sent = Kind::ALL.map(|k| event(k, "sent"));
        let dropped = Kind::ALL.map(|k| event(k, "dropped"));
        let queue_full = reason("queue_full");
        let sink_error = reason("sink_error");
        let truncated = Kind::ALL.map(truncated);
        Counts {
            sent,
            dropped,
            queue_full,
            sink_error,
            truncated,
        }
    }

    pub(super) fn sent(&self, kind: Kind) {
        self.sent[slot(kind)].inc();
    }

    pub(super) fn queue_full(&self, kind: Kind) {
        self.dropped[slot(kind)].inc();
        self.queue_full.inc();
    }

    pub(super) fn sink_error(&self, kind: Kind) {
        self.dropped[slot(kind)].inc();
        self.sink_error.inc();
    }

    pub(super) fn truncated(&self, kind: Kind) {
        self.truncated[slot(kind)].inc();
    }
}

impl PayloadLog {
    /// Starts the sink task (needs a Tokio runtime).
    pub fn start(
        target: Target,
        args: &MonitorArgs,
        pod: &str,
        metrics: MonitorFamilies,
    ) -> Arc<PayloadLog> {
        let (tx, rx) = mpsc::channel(args.payload_log_queue.max(1));
        let (closing, closed) = watch::channel(false);
        tracing::info!(sink = %target.describe(), mode = ?args.payload_log_mode, rate = args.payload_log_sample_rate, "payload logging on");
        let counts = Counts::new(&metrics);
        let sink = Sink {
            rx,
            closed,
            max_bytes: args.payload_log_max_bytes,
            c: counts.clone(),
        };
        let task = match target {
            Target::Http(url) => tokio::spawn(http_sink::run(
                sink,
                url,
                args.payload_log_http_batch.max(1),
            )),
            Target::File(path) => {
                tokio::spawn(sink.run_batches(Batches::File(path), usize::MAX, FILE_FLUSH))
            }
            Target::S3 { store, prefix } => tokio::spawn(sink.run_batches(
                Batches::S3 {
                    store,
                    prefix,
                    pod: pod.to_string(),
                    seq: 0,
                },
                args.payload_log_batch.max(1),
                args.payload_log_flush_interval,
            )),
        };
        Arc::new(PayloadLog {
            tx,
            mode: args.payload_log_mode,
            sample_rate: args.payload_log_sample_rate,
            closing,
            task: Mutex::new(Some(task)),
            counts,
            metrics,
        })
    }

    /// Whether this inference is logged.
    pub fn sampled(&self) -> bool {
        self.sample_rate >= 1.0 || (self.sample_rate > 0.0 && fastrand::f64() < self.sample_rate)
    }

    /// Whether the queue has room now for the events of one sampled
    /// inference (as the mode says). When it has not, they are counted
    /// dropped (`queue_full`) here, before the request copies its inputs for
    /// them, so a sink that is down costs the request path next to nothing.
    pub fn admit(&self) -> bool {
        let (req, resp) = (self.mode.requests(), self.mode.responses());
        if self.tx.capacity() >= usize::from(req) + usize::from(resp) {
            return true;
        }
        if req {
            self.counts.queue_full(Kind::Request);
        }
        if resp {
            self.counts.queue_full(Kind::Response);
        }
        false
    }

    /// Enqueues `event`, or drops and counts it when the queue is full.
    pub fn send(&self, event: Event) {
        if let Err(e) = self.tx.try_send(event) {
            let ev = match e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            };
            self.counts.queue_full(ev.kind);
        }
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Sends what is queued within `timeout`; what is left is dropped and counted.
    pub async fn close(&self, timeout: Duration) {
        let _ = self.closing.send(true);
        let Some(mut task) = self.task.lock().expect("payload log task lock").take() else {
            return;
        };
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            task.abort();
            let left = self.queued();
            tracing::warn!(left, "payload log not flushed within the shutdown timeout");
            self.metrics
                .payload_dropped
                .get_or_create(&[("reason", "shutdown")])
                .inc_by(left as u64);
        }
    }
}

/// The receiving end of the queue, owned by the sink task.
pub(super) struct Sink {
    rx: mpsc::Receiver<Event>,
    closed: watch::Receiver<bool>,
    pub(super) max_bytes: usize,
    pub(super) c: Counts,
}

enum Batches {
    File(PathBuf),
    S3 {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        pod: String,
        seq: u64,
    },
}

impl Sink {
    /// The next event; `None` once closing and the queue is empty.
    pub(super) async fn next(&mut self) -> Option<Event> {
        if *self.closed.borrow() {
            self.rx.close();
            return self.rx.recv().await;
        }
        tokio::select! {
            ev = self.rx.recv() => ev,
            _ = self.closed.changed() => {
                self.rx.close();
                self.rx.recv().await
            }
        }
    }

    /// Appends what is queued right now to `events`, up to `limit` in all.
    pub(super) fn take_queued(&mut self, events: &mut Vec<Event>, limit: usize) {
        while events.len() < limit {
            match self.rx.try_recv() {
                Ok(ev) => events.push(ev),
                Err(_) => break,
            }
        }
    }

    async fn run_batches(mut self, mut out: Batches, batch: usize, interval: Duration) {
        let mut buf: Vec<Event> = Vec::new();
        loop {
            let deadline = tokio::time::sleep(interval);
            tokio::pin!(deadline);
            let more = loop {
                tokio::select! {
                    biased;
                    ev = self.next() => match ev {
                        Some(ev) => {
                            buf.push(ev);
                            if buf.len() >= batch { break true; }
                        }
                        None => break false,
                    },
                    _ = &mut deadline, if !buf.is_empty() => break true,
                }
            };
            if !buf.is_empty() {
                out.write(std::mem::take(&mut buf), self.max_bytes, &self.c)
                    .await;
            }
            if !more {
                return;
            }
        }
    }
}

impl Batches {
    async fn write(&mut self, events: Vec<Event>, max: usize, c: &Counts) {
        let mut lines = Vec::new();
        for ev in &events {
            let r = ev.render(max);
            if r.truncated {
                c.truncated(ev.kind);
            }
            ev.write_structured(&r, &mut lines);
            lines.push(b'\n');
        }
        let result = match self {
            Batches::File(path) => append(path, &lines).await,
            Batches::S3 {
                store,
                prefix,
                pod,
                seq,
            } => {
                *seq += 1;
                put_gzip(store.as_ref(), &object_key(prefix, pod, *seq), &lines).await
            }
        };
        for ev in &events {
            match &result {
                Ok(()) => c.sent(ev.kind),
                Err(_) => c.sink_error(ev.kind),
            }
        }
        if let Err(e) = result {
            tracing::warn!(
                events = events.len(),
                "payload log: a batch was not written: {e}"
            );
        }
    }
}

async fn append(path: &PathBuf, lines: &[u8]) -> Result<(), String> {
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| e.to_string())?;
    f.write_all(lines).await.map_err(|e| e.to_string())?;
    f.flush().await.map_err(|e| e.to_string())
}

/// `<prefix>/<yyyy>/<mm>/<dd>/<unix ms>-<pod>-<seq>.jsonl.gz`.
pub fn object_key(prefix: &str, pod: &str, seq: u64) -> String {
    let now = std::time::SystemTime::now();
    let day = humantime::format_rfc3339_seconds(now).to_string();
    let (y, mo, d) = (&day[0..4], &day[5..7], &day[8..10]);
    let name = format!(
        "{y}/{mo}/{d}/{}-{pod}-{seq:06}.jsonl.gz",
        super::id::now_ms()
    );
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

async fn put_gzip(store: &dyn ObjectStore, key: &str, lines: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines).map_err(|e| e.to_string())?;
    let bytes = gz.finish().map_err(|e| e.to_string())?;
    store
        .put(&object_store::path::Path::from(key), bytes.into())
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_url_is_shown_without_credentials() {
        assert_eq!(
            redact("https://u:p@logs.example/x?sig=1"),
            "https://***@logs.example/x"
        );
        assert_eq!(redact("http://logs.example/a@b"), "http://logs.example/a@b");
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
        let err = Target::parse("ftp://u:secret@host/x").err().unwrap();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("ftp"), "{err}");
    }
}

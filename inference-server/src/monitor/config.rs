//! The flags of monitoring (`serve`'s `--payload-log*`, `--feedback-*`,
//! `--drift-window`, `--prometheus-url`) and the pod's identity from the
//! downward API.

use std::time::Duration;

use clap::Args;

/// What payload logging records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogMode {
    /// Request and response events.
    All,
    /// Request events only.
    Request,
    /// Response events only: no inputs are logged.
    Response,
}

impl LogMode {
    pub fn requests(self) -> bool {
        matches!(self, LogMode::All | LogMode::Request)
    }

    pub fn responses(self) -> bool {
        matches!(self, LogMode::All | LogMode::Response)
    }
}

#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Where payload events go: `http(s)://` (a CloudEvents receiver),
    /// `s3://bucket/prefix` (gzip JSON Lines) or `file:///path` (JSON Lines).
    /// Unset: no payload logging.
    #[arg(long, env = "MODELSHIP_PAYLOAD_LOG", value_name = "URL")]
    pub payload_log: Option<String>,
    /// `all` (requests and responses), `request`, or `response` (no inputs logged).
    #[arg(
        long,
        env = "MODELSHIP_PAYLOAD_LOG_MODE",
        value_enum,
        default_value = "all"
    )]
    pub payload_log_mode: LogMode,
    /// Share of inferences logged, 0 to 1.
    #[arg(long, env = "MODELSHIP_PAYLOAD_LOG_SAMPLE_RATE", default_value_t = 1.0, value_parser = parse_rate)]
    pub payload_log_sample_rate: f64,
    /// Largest event body in bytes; a longer one is replaced by a note and flagged `truncated`.
    #[arg(long, env = "MODELSHIP_PAYLOAD_LOG_MAX_BYTES", default_value_t = 64 * 1024)]
    pub payload_log_max_bytes: usize,
    /// Events waiting for the sink at most; more are dropped and counted.
    #[arg(long, env = "MODELSHIP_PAYLOAD_LOG_QUEUE", default_value_t = 10_000)]
    pub payload_log_queue: usize,
    /// HTTP sink: events per POST at most. Above 1, CloudEvents' batched mode
    /// (a JSON array of structured events, `application/cloudevents-batch+json`);
    /// 1, one event per POST in binary mode, what Knative Eventing's Broker takes.
    /// A batch waits at most 100 ms to fill.
    #[arg(long, env = "MODELSHIP_PAYLOAD_LOG_HTTP_BATCH", default_value_t = 100,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub payload_log_http_batch: usize,
    /// S3 sink: events per object.
    #[arg(long, env = "MODELSHIP_PAYLOAD_LOG_BATCH", default_value_t = 1000)]
    pub payload_log_batch: usize,
    /// S3 sink: longest an event waits for its object to be written.
    #[arg(long, env = "MODELSHIP_PAYLOAD_LOG_FLUSH_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub payload_log_flush_interval: Duration,
    /// How long answers are kept for feedback by id.
    #[arg(long, env = "MODELSHIP_FEEDBACK_WINDOW", default_value = "15m", value_parser = humantime::parse_duration)]
    pub feedback_window: Duration,
    /// Answers kept for feedback at most (the oldest go first).
    #[arg(
        long,
        env = "MODELSHIP_FEEDBACK_MAX_ENTRIES",
        default_value_t = 100_000
    )]
    pub feedback_max_entries: usize,
    /// Rows in this pod's drift window (its PSI figures).
    #[arg(long, env = "MODELSHIP_DRIFT_WINDOW", default_value_t = 1000)]
    pub drift_window: usize,
    /// A Prometheus that scrapes every replica with a `namespace` label (a PodMonitor adds
    /// it): the page's figures then cover the ready replicas of this model, variant and namespace.
    #[arg(long, env = "MODELSHIP_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,
}

impl Default for MonitorArgs {
    fn default() -> Self {
        MonitorArgs {
            payload_log: None,
            payload_log_mode: LogMode::All,
            payload_log_sample_rate: 1.0,
            payload_log_max_bytes: 64 * 1024,
            payload_log_queue: 10_000,
            payload_log_http_batch: 100,
            payload_log_batch: 1000,
            payload_log_flush_interval: Duration::from_secs(10),
            feedback_window: Duration::from_secs(15 * 60),
            feedback_max_entries: 100_000,
            drift_window: 1000,
            prometheus_url: None,
        }
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("a sample rate is a number from 0 to 1".into()),
    }
}

/// Who this server is, from the downward API.
#[derive(Debug, Clone)]
pub struct Identity {
    pub namespace: String,
    pub pod: String,
    /// `MODELSHIP_POD_IP` and the HTTP port: where other replicas reach this one.
    pub addr: Option<std::net::SocketAddr>,
    pub variant: String,
}

impl Identity {
    /// `MODELSHIP_NAMESPACE` (else `default`), `MODELSHIP_POD_NAME` (else
    /// the host name), `MODELSHIP_POD_IP` with `port`.
    pub fn from_env(port: u16, variant: &str) -> Identity {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let pod = var("MODELSHIP_POD_NAME")
            .or_else(|| var("HOSTNAME"))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| "local".into());
        Identity {
            namespace: var("MODELSHIP_NAMESPACE").unwrap_or_else(|| "default".into()),
            pod,
            addr: var("MODELSHIP_POD_IP")
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                .map(|ip| std::net::SocketAddr::new(ip, port)),
            variant: variant.to_string(),
        }
    }
}

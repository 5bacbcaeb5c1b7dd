//! Command-line configuration: one clap struct per subcommand, every flag
//! also an environment variable (`MODELSHIP_*`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backends::{RuntimeChoice, RuntimeOptions};
use crate::engine::EngineConfig;

#[derive(Debug, Parser)]
#[command(
    name = "modelship-server",
    version,
    about = "Serve ONNX models over the Open Inference Protocol v2"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a model and serve it over HTTP.
    Serve(ServeArgs),
    /// Download a model into a directory and verify it (the operator's init container).
    Fetch(crate::fetch::FetchArgs),
    /// Score a CSV or JSON Lines file offline and write JSON Lines.
    Predict(crate::predict::PredictArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "MODELSHIP_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `modelship_server=debug,tower_http=debug`.
    #[arg(
        long,
        global = true,
        env = "MODELSHIP_LOG",
        default_value = "info,ort=warn"
    )]
    pub log: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The model: a path, a directory with one .onnx file, file://, http(s)://, s3:// or builtin://NAME.
    #[arg(long, env = "MODELSHIP_MODEL")]
    pub model: String,
    /// Name to serve the model under (default: the file name without .onnx, or the builtin name).
    #[arg(long, env = "MODELSHIP_MODEL_NAME")]
    pub model_name: Option<String>,
    /// Version to report; when set, /versions/{v} routes must name it.
    #[arg(long, env = "MODELSHIP_MODEL_VERSION")]
    pub model_version: Option<String>,
    /// Expected SHA-256 of the model file (hex).
    #[arg(long, env = "MODELSHIP_SHA256")]
    pub sha256: Option<String>,
    /// Model runtime.
    #[arg(long, env = "MODELSHIP_RUNTIME", value_enum, default_value = "auto")]
    pub runtime: RuntimeChoice,
    /// Path to libonnxruntime.so (default: searched in the usual places).
    #[arg(long, env = "MODELSHIP_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Threads one inference may use (0 = 1 when several workers run batches, else all cores).
    #[arg(long, env = "MODELSHIP_INTRA_OP_THREADS", default_value_t = 0)]
    pub intra_op_threads: usize,
    /// Address to listen on.
    #[arg(long, env = "MODELSHIP_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "MODELSHIP_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Most rows merged into one batch (1 disables batching).
    #[arg(long, env = "MODELSHIP_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,
    /// Longest a batch waits for more requests under load, e.g. `1ms`, `500us`
    /// (an idle server runs a lone request at once).
    #[arg(long, env = "MODELSHIP_MAX_BATCH_DELAY", default_value = "1ms", value_parser = humantime::parse_duration)]
    pub max_batch_delay: Duration,
    /// Requests that may wait for a batch; more are refused with 429.
    #[arg(long, env = "MODELSHIP_MAX_QUEUE", default_value_t = 1024)]
    pub max_queue: usize,
    /// Batches run at the same time (0 = number of cores).
    #[arg(long, env = "MODELSHIP_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "MODELSHIP_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest a client may take to send a request body (slower: 408).
    #[arg(long, env = "MODELSHIP_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// After SIGTERM, how long to keep serving while reporting not-ready, so
    /// load balancers stop sending traffic before the listener closes.
    #[arg(long, env = "MODELSHIP_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,
    /// After SIGTERM (and the drain delay), how long in-flight requests may take before exit.
    #[arg(long, env = "MODELSHIP_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl ServeArgs {
    pub fn workers(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            max_batch_size: self.max_batch_size.max(1),
            max_batch_delay: self.max_batch_delay,
            max_queue: self.max_queue.max(1),
            workers: self.workers(),
        }
    }

    pub fn runtime_options(&self) -> RuntimeOptions {
        let threads = match self.intra_op_threads {
            0 if self.workers() > 1 => 1,
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        RuntimeOptions {
            runtime: self.runtime,
            ort_library: self.ort_library.clone(),
            intra_op_threads: Some(threads),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_defaults_are_sane() {
        let cli = Cli::try_parse_from(["modelship-server", "serve", "--model", "builtin://iris"])
            .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(args.port, 8080);
        assert_eq!(args.max_batch_delay, Duration::from_millis(1));
        assert_eq!(args.max_body_bytes, 16 * 1024 * 1024);
        assert!(args.workers() >= 1);
    }

    #[test]
    fn durations_parse_humanly() {
        let cli = Cli::try_parse_from([
            "modelship-server",
            "serve",
            "--model",
            "m.onnx",
            "--max-batch-delay",
            "500us",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(args.max_batch_delay, Duration::from_micros(500));
    }
}

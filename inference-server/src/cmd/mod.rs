//! The command line: one module per subcommand (`serve`, `fetch`,
//! `predict`) with its flags and what it runs; flags that several share
//! live once in `args`. Every flag is also an environment variable
//! (`MODELSHIP_*`). `main.rs` only parses and calls [`run`].

pub mod args;
pub mod fetch;
pub mod predict;
pub mod serve;
pub mod termination;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

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
    // Boxed: its flags outweigh the other subcommands many times.
    Serve(Box<serve::ServeArgs>),
    /// Download a model into a directory and verify it (the operator's init container).
    Fetch(fetch::FetchArgs),
    /// Score a CSV or JSON Lines file offline and write JSON Lines.
    Predict(predict::PredictArgs),
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

/// Installs the log subscriber on stderr, as `--log` and `--log-format` say.
pub fn init_tracing(log: &LogArgs) {
    let filter = EnvFilter::try_new(&log.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Runs a subcommand to its end.
pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Fetch(args) => fetch::run(&args).await,
        Command::Predict(args) => predict::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        assert_eq!(args.model.model, "builtin://iris");
    }

    #[test]
    fn variant_is_primary_by_default_and_a_short_token() {
        let parse = |extra: &[&str]| {
            Cli::try_parse_from(
                ["modelship-server", "serve", "--model", "m.onnx"]
                    .into_iter()
                    .chain(extra.iter().copied()),
            )
            .map(|cli| match cli.command {
                Command::Serve(args) => (args.variant, args.api_keys_dir),
                _ => panic!("expected serve"),
            })
        };
        assert_eq!(parse(&[]).unwrap(), ("primary".to_string(), None));
        let (variant, keys) = parse(&["--variant", "canary", "--api-keys-dir", "/k"]).unwrap();
        assert_eq!(variant, "canary");
        assert_eq!(keys.as_deref(), Some(std::path::Path::new("/k")));
        for bad in ["", "a b", "x\n", &"v".repeat(33)] {
            assert!(parse(&["--variant", bad]).is_err(), "{bad:?}");
        }
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

#[cfg(test)]
mod shared_flags {
    use super::*;

    /// `--model`, `--sha256` and the runtime flags mean the same in `serve` and `predict`.
    #[test]
    fn serve_and_predict_share_model_and_runtime_flags() {
        let flags = [
            "--model",
            "m.onnx",
            "--sha256",
            "ab",
            "--runtime",
            "tract",
            "--intra-op-threads",
            "2",
        ];
        let parse = |sub: &str| {
            Cli::try_parse_from(["modelship-server", sub].into_iter().chain(flags)).unwrap()
        };
        let Command::Serve(serve) = parse("serve").command else {
            panic!("expected serve")
        };
        let Command::Predict(predict) = parse("predict").command else {
            panic!("expected predict")
        };
        let predict_model = predict.model_args().expect("--model given");
        for (model, runtime) in [
            (&serve.model, &serve.runtime),
            (&predict_model, &predict.runtime),
        ] {
            assert_eq!(model.model, "m.onnx");
            assert_eq!(model.checksum.sha256.as_deref(), Some("ab"));
            assert_eq!(runtime.runtime, crate::runtime::RuntimeChoice::Tract);
            assert_eq!(runtime.intra_op_threads, 2);
        }
    }
}

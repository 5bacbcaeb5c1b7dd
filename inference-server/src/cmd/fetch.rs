//! `modelship-server fetch URI DIR`: downloads and verifies a model into a directory.
//!
//! The operator runs it as an init container in front of the server. On failure it exits
//! non-zero with a one-line cause on stderr and in the termination log, which Kubernetes
//! shows as the container's termination message (and the operator copies into status).
//! Transient failures (no connection, timeouts, HTTP 408/429/5xx) are retried first with
//! bounded backoff (`--attempts`, `--retry-delay`, `--retry-max-delay`). Exit codes: 0
//! done; [`EXIT_PERMANENT`] (12) when no retry can help (404, 403, a bad URI, a sha256
//! mismatch, a malformed card), so a Job's `podFailurePolicy` can fail at once; 1 for
//! everything else, transient causes after the last attempt included.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::args::ChecksumArgs;
use super::termination::write_termination_message;
use crate::source::{ModelUri, RetryPolicy, SourceOptions, fetch_to_dir_with};

/// The exit code of a failure that no retry can fix.
pub const EXIT_PERMANENT: u8 = 12;

/// Arguments of `modelship-server fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Model to download: a path, file://, http(s)://, s3://BUCKET/KEY or builtin://NAME.
    #[arg(value_name = "URI", env = "MODELSHIP_MODEL")]
    pub uri: String,
    /// Directory to write the model (and its card) into; created when missing.
    #[arg(value_name = "DIR", env = "MODELSHIP_MODEL_DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub checksum: ChecksumArgs,
    /// Tries in all for a remote model whose read fails for a transient cause
    /// (no connection, timeout, HTTP 408/429/5xx); 1: no retry.
    #[arg(long, env = "MODELSHIP_FETCH_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each next one.
    #[arg(long, env = "MODELSHIP_FETCH_RETRY_DELAY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub retry_delay: Duration,
    /// The longest wait between two tries.
    #[arg(long, env = "MODELSHIP_FETCH_RETRY_MAX_DELAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_max_delay: Duration,
}

impl FetchArgs {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.attempts,
            first_delay: self.retry_delay,
            max_delay: self.retry_max_delay,
        }
    }
}

/// Runs `fetch`; prints what was written, or the one-line cause of the failure.
pub async fn run(args: &FetchArgs) -> ExitCode {
    if let Ok(uri) = ModelUri::parse(&args.uri) {
        tracing::info!(%uri, dir = %args.dir.display(), "fetching model");
    }
    match fetch_to_dir_with(
        &args.uri,
        &args.dir,
        args.checksum.sha256.as_deref(),
        &SourceOptions {
            retry: args.retry_policy(),
            ..SourceOptions::default()
        },
    )
    .await
    {
        Ok(fetched) => {
            let card = fetched
                .card
                .map(|c| format!(", card {}", c.display()))
                .unwrap_or_default();
            println!(
                "fetched {} bytes to {} (sha256 {}){card}",
                fetched.size,
                fetched.path.display(),
                fetched.sha256
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let message = e.to_string();
            eprintln!("error: {message}");
            write_termination_message(&message);
            if e.is_permanent() {
                ExitCode::from(EXIT_PERMANENT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        fetch: FetchArgs,
    }

    #[test]
    fn parses_uri_dir_and_sha256() {
        let cli = Cli::parse_from(["fetch", "s3://b/iris.onnx", "/models", "--sha256", "ab"]);
        assert_eq!(cli.fetch.uri, "s3://b/iris.onnx");
        assert_eq!(cli.fetch.dir, PathBuf::from("/models"));
        assert_eq!(cli.fetch.checksum.sha256.as_deref(), Some("ab"));
        assert_eq!(cli.fetch.retry_policy(), RetryPolicy::default());
        let cli = Cli::parse_from([
            "fetch",
            "u",
            "d",
            "--attempts",
            "2",
            "--retry-delay",
            "10ms",
        ]);
        assert_eq!(cli.fetch.retry_policy().attempts, 2);
        assert_eq!(
            cli.fetch.retry_policy().first_delay,
            Duration::from_millis(10)
        );
        assert!(Cli::try_parse_from(["fetch", "u", "d", "--attempts", "0"]).is_err());
    }
}

//! `modelship-server fetch URI DIR`: downloads and verifies a model into a directory.
//!
//! The operator runs it as an init container in front of the server. On failure it exits
//! non-zero with a one-line cause on stderr and in the termination log, which Kubernetes
//! shows as the container's termination message (and the operator copies into status).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::source::{ModelUri, SourceOptions, fetch_to_dir_with};

/// Where Kubernetes reads a container's termination message from.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";
/// Overrides [`DEFAULT_TERMINATION_LOG`] (tests, or a pod's `terminationMessagePath`).
pub const TERMINATION_LOG_ENV: &str = "MODELSHIP_TERMINATION_LOG";
/// Kubernetes keeps at most 4096 bytes of a termination message.
const TERMINATION_MESSAGE_MAX: usize = 4096;

/// Arguments of `modelship-server fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Model to download: a path, file://, http(s)://, s3://BUCKET/KEY or builtin://NAME.
    #[arg(value_name = "URI", env = "MODELSHIP_MODEL")]
    pub uri: String,
    /// Directory to write the model (and its card) into; created when missing.
    #[arg(value_name = "DIR", env = "MODELSHIP_MODEL_DIR")]
    pub dir: PathBuf,
    /// Expected SHA-256 of the model, in hex; the download fails when it differs.
    #[arg(long, value_name = "HEX", env = "MODELSHIP_SHA256")]
    pub sha256: Option<String>,
}

/// Runs `fetch`; prints what was written, or the one-line cause of the failure.
pub async fn run_fetch(args: &FetchArgs) -> ExitCode {
    if let Ok(uri) = ModelUri::parse(&args.uri) {
        tracing::info!(%uri, dir = %args.dir.display(), "fetching model");
    }
    match fetch_to_dir_with(
        &args.uri,
        &args.dir,
        args.sha256.as_deref(),
        &SourceOptions::default(),
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
            ExitCode::FAILURE
        }
    }
}

/// Writes `msg` as the container's termination message: to `$MODELSHIP_TERMINATION_LOG`
/// (created if needed) when set, else to `/dev/termination-log` when that file exists and
/// is writable (it does in a Kubernetes pod; elsewhere nothing is written). Best effort.
pub fn write_termination_message(msg: &str) {
    let (path, create) = match std::env::var_os(TERMINATION_LOG_ENV) {
        Some(path) if !path.is_empty() => (PathBuf::from(path), true),
        _ => (PathBuf::from(DEFAULT_TERMINATION_LOG), false),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(create)
        .open(&path);
    if let Ok(mut file) = file {
        let _ = file.write_all(truncate(msg, TERMINATION_MESSAGE_MAX).as_bytes());
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
        assert_eq!(cli.fetch.sha256.as_deref(), Some("ab"));
    }

    #[test]
    fn termination_messages_are_capped_at_a_char_boundary() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("é", 1), "");
        assert_eq!(
            truncate(&"x".repeat(5000), TERMINATION_MESSAGE_MAX).len(),
            4096
        );
    }
}

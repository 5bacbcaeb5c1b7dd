//! `modelship-server fetch URI DIR`: downloads and verifies a model into a directory.
//!
//! The operator runs it as an init container in front of the server. On failure it exits
//! non-zero with a one-line cause on stderr and in the termination log, which Kubernetes
//! shows as the container's termination message (and the operator copies into status).

use std::path::PathBuf;
use std::process::ExitCode;

use super::args::ChecksumArgs;
use super::termination::write_termination_message;
use crate::source::{ModelUri, SourceOptions, fetch_to_dir_with};

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
    }
}

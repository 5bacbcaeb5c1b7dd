//! Flags that several subcommands share, each declared once and flattened
//! into `serve`, `fetch` and `predict` (`#[command(flatten)]`).

use std::path::PathBuf;

use clap::Args;

use crate::runtime::{self, RuntimeChoice, RuntimeOptions};

/// Which model to load, and the checksum it must have.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The model: a path, a directory with one .onnx file, file://, http(s)://, s3:// or builtin://NAME.
    #[arg(long, env = "MODELSHIP_MODEL")]
    pub model: String,
    #[command(flatten)]
    pub checksum: ChecksumArgs,
}

/// `--sha256`: the checksum a downloaded model must have.
#[derive(Debug, Clone, Args)]
pub struct ChecksumArgs {
    /// Expected SHA-256 of the model file, in hex; loading fails when it differs.
    #[arg(long, value_name = "HEX", env = "MODELSHIP_SHA256")]
    pub sha256: Option<String>,
}

/// Which runtime runs the model, and with how many threads.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Model runtime.
    #[arg(long, env = "MODELSHIP_RUNTIME", value_enum, default_value = "auto")]
    pub runtime: RuntimeChoice,
    /// Path to libonnxruntime.so (default: searched in the usual places).
    #[arg(long, env = "MODELSHIP_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Threads one inference may use (0 = 1 when several workers run batches, else all cores).
    #[arg(long, env = "MODELSHIP_INTRA_OP_THREADS", default_value_t = 0)]
    pub intra_op_threads: usize,
}

impl RuntimeArgs {
    /// How to load the model when `workers` inferences may run at once.
    pub fn options(&self, workers: usize) -> RuntimeOptions {
        RuntimeOptions {
            runtime: self.runtime,
            ort_library: self.ort_library.clone(),
            intra_op_threads: Some(runtime::intra_op_threads(self.intra_op_threads, workers)),
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
        runtime: RuntimeArgs,
    }

    #[test]
    fn intra_op_threads_zero_means_one_per_worker_when_workers_share_the_cores() {
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.runtime.options(4).intra_op_threads, Some(1));
        assert_eq!(
            cli.runtime.options(1).intra_op_threads,
            Some(runtime::threads(0))
        );
        let cli = Cli::parse_from(["x", "--intra-op-threads", "3"]);
        assert_eq!(cli.runtime.options(4).intra_op_threads, Some(3));
    }
}

//! `modelship-server predict`: its flags, and the run that loads the model
//! and hands it to the scoring pipeline of `crate::predict`.

use std::process::ExitCode;

use clap::Args;

use super::args::{ModelArgs, RuntimeArgs};
use crate::predict::read::InputFormat;
use crate::predict::{PredictJob, predict};
use crate::runtime;
use crate::source;

/// Arguments of `modelship-server predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Rows to score: a CSV file (with or without a header line) or JSON Lines; `-` reads standard input.
    #[arg(long, env = "MODELSHIP_PREDICT_INPUT", default_value = "-")]
    pub input: String,
    /// Where to write one JSON line per scored row; `-` writes standard output.
    #[arg(long, env = "MODELSHIP_PREDICT_OUTPUT", default_value = "-")]
    pub output: String,
    /// Input format; `auto` goes by the file extension, else by the first character (`{` or `[`: JSON Lines).
    #[arg(
        long,
        env = "MODELSHIP_PREDICT_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    pub format: InputFormat,
    /// Rows run through the model at once.
    #[arg(long, env = "MODELSHIP_PREDICT_BATCH_SIZE", default_value_t = 1024)]
    pub batch_size: usize,
    /// Stop at the first bad row (exit code 1) instead of reporting and skipping it.
    #[arg(long, env = "MODELSHIP_PREDICT_FAIL_ON_BAD_ROWS")]
    pub fail_on_bad_rows: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl PredictArgs {
    /// The scoring job these flags describe.
    pub fn job(&self) -> PredictJob {
        PredictJob {
            input: self.input.clone(),
            output: self.output.clone(),
            format: self.format,
            batch_size: self.batch_size,
            fail_on_bad_rows: self.fail_on_bad_rows,
        }
    }
}

/// Runs `predict`: 0 when every row was read (scored or reported and
/// skipped), 1 on a failure, with its cause on stderr.
pub async fn run(args: PredictArgs) -> ExitCode {
    let artifact =
        match source::load_artifact(&args.model.model, args.model.checksum.sha256.as_deref()).await
        {
            Ok(a) => a,
            Err(e) => return fail(&format!("model fetch failed: {e}")),
        };
    let result = tokio::task::spawn_blocking(move || {
        // One batch runs at a time, so it may use every core.
        let options = args.runtime.options(1);
        let backend =
            runtime::load(&artifact, &options).map_err(|e| format!("model load failed: {e}"))?;
        let card = artifact.card.clone().unwrap_or_default();
        predict(&args.job(), backend, &card)
    })
    .await;
    match result {
        Ok(Ok(summary)) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Ok(Err(msg)) => fail(&msg),
        Err(e) => fail(&format!("predict panicked: {e}")),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("modelship-server predict: {msg}");
    ExitCode::FAILURE
}

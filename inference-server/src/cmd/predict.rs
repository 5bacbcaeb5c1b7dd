//! `modelship-server predict`: its flags, and the run that lists the input,
//! loads the model and hands both to the scoring pipeline of
//! `crate::predict`; then the exit code ([`Reason`]) and the container's
//! termination message, a JSON summary the operator reads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::args::{ChecksumArgs, ModelArgs, RuntimeArgs};
use super::termination::write_termination_message;
use crate::predict::job::{self, JobSpec, ModelInfo};
use crate::predict::read::InputFormat;
use crate::predict::shard::Shard;
use crate::predict::{Failure, OutputFormat, Reason, ScoreSettings};
use crate::runtime;
use crate::source;

/// What to do with a row that cannot be scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BadRows {
    /// Count it, list it (file and line) in the report, go on.
    Skip,
    /// End the run (exit code 14), naming the file and line.
    Fail,
}

/// Arguments of `modelship-server predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// The model: a path, a directory with one .onnx file, file://, http(s)://, s3:// or builtin://NAME.
    #[arg(
        long,
        env = "MODELSHIP_MODEL",
        required_unless_present = "write_manifest"
    )]
    pub model: Option<String>,
    #[command(flatten)]
    pub checksum: ChecksumArgs,
    /// Rows to score: a file or a prefix (`s3://bucket/prefix/`, `file:///abs/dir`, a path); `-` reads standard input.
    #[arg(long, env = "MODELSHIP_PREDICT_INPUT", default_value = "-")]
    pub input: String,
    /// A file (`-`: standard output), or with --shard/--run-id a prefix (`s3://bucket/prefix/`, a directory) for parts.
    #[arg(long, env = "MODELSHIP_PREDICT_OUTPUT", default_value = "-")]
    pub output: String,
    /// Input format; `auto` goes by each file's extension, else by its first bytes.
    #[arg(
        long,
        alias = "format",
        env = "MODELSHIP_PREDICT_INPUT_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    pub input_format: InputFormat,
    /// Output format.
    #[arg(
        long,
        env = "MODELSHIP_PREDICT_OUTPUT_FORMAT",
        value_enum,
        default_value = "jsonl"
    )]
    pub output_format: OutputFormat,
    /// Rows run through the model at once.
    #[arg(long, env = "MODELSHIP_PREDICT_BATCH_SIZE", default_value_t = 1024)]
    pub batch_size: usize,
    /// Bad rows: skipped and reported, or the end of the run (exit code 14).
    #[arg(
        long,
        env = "MODELSHIP_PREDICT_BAD_ROWS",
        value_enum,
        default_value = "skip"
    )]
    pub bad_rows: BadRows,
    /// The same as `--bad-rows fail`.
    #[arg(long, env = "MODELSHIP_PREDICT_FAIL_ON_BAD_ROWS")]
    pub fail_on_bad_rows: bool,
    /// Input columns copied beside the predictions (comma-separated names).
    #[arg(long, env = "MODELSHIP_PREDICT_KEEP_COLUMNS", value_delimiter = ',')]
    pub keep_columns: Vec<String>,
    /// Score only shard I of N (`$(JOB_COMPLETION_INDEX)/N` in a Job): see docs/batch.md.
    #[arg(long, env = "MODELSHIP_PREDICT_SHARD", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// The run these parts belong to (the BatchPrediction's UID).
    #[arg(long, env = "MODELSHIP_PREDICT_RUN_ID")]
    pub run_id: Option<String>,
    /// Replace another run's parts, reports and manifest at the output prefix.
    #[arg(long, env = "MODELSHIP_PREDICT_OVERWRITE")]
    pub overwrite: bool,
    /// Where to write the JSON summary (default: $MODELSHIP_TERMINATION_LOG, else /dev/termination-log when writable).
    #[arg(long, env = "MODELSHIP_PREDICT_TERMINATION_LOG")]
    pub termination_log: Option<PathBuf>,
    /// The last step of a Job: check that all --shards reports of --run-id are done and write `_manifest.json`.
    #[arg(long, requires_all = ["shards", "run_id"])]
    pub write_manifest: bool,
    /// How many shards the run has (with --write-manifest).
    #[arg(long)]
    pub shards: Option<u32>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl PredictArgs {
    /// The run these flags describe.
    pub fn spec(&self) -> JobSpec {
        JobSpec {
            input: self.input.clone(),
            output: self.output.clone(),
            input_format: self.input_format,
            output_format: self.output_format,
            shard: self.shard,
            run_id: self.run_id.clone(),
            overwrite: self.overwrite,
            keep_columns: self
                .keep_columns
                .iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect(),
        }
    }

    /// `--model` and `--sha256`, as `serve` and `fetch` take them (`None` with --write-manifest).
    pub fn model_args(&self) -> Option<ModelArgs> {
        Some(ModelArgs {
            model: self.model.clone()?,
            checksum: self.checksum.clone(),
        })
    }

    fn fail_on_bad_rows(&self) -> bool {
        self.fail_on_bad_rows || self.bad_rows == BadRows::Fail
    }
}

/// Kubernetes keeps 4096 bytes of a termination message: the message field is cut well before.
const MESSAGE_MAX: usize = 1500;

fn cut(text: &str) -> String {
    if text.len() <= MESSAGE_MAX {
        return text.to_string();
    }
    let mut end = MESSAGE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Writes the termination message: to `--termination-log` when given, else where `serve` writes its own.
fn terminate(args: &PredictArgs, message: serde_json::Value) {
    let text = message.to_string();
    match &args.termination_log {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!(
                    "modelship-server predict: cannot write {}: {e}",
                    path.display()
                );
            }
        }
        None => write_termination_message(&text),
    }
}

/// SIGTERM (and Ctrl-C) sets `cancel`: the pipeline stops at its next batch
/// and nothing is committed. A run stuck in I/O is ended after 10 s, with the
/// same exit code: a killed shard never exits 0.
fn watch_signals(cancel: Arc<AtomicBool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        cancel.store(true, Ordering::Relaxed);
        eprintln!("modelship-server predict: terminated; stopping without writing the part");
        tokio::time::sleep(Duration::from_secs(10)).await;
        std::process::exit(i32::from(Reason::Terminated.code()));
    });
}

/// Runs `predict`: the exit code is [`Reason::code`] (0 when every row was
/// read, scored or reported and skipped), the cause on stderr.
pub async fn run(args: PredictArgs) -> ExitCode {
    let cancel = Arc::new(AtomicBool::new(false));
    watch_signals(cancel.clone());
    if args.write_manifest {
        return manifest(&args).await;
    }
    let spec = args.spec();
    let shard = spec.shard;
    let result = run_job(&args, spec, cancel).await;
    let shard = shard.unwrap_or(Shard::WHOLE);
    let (code, message) = match result {
        Ok(finished) => {
            eprintln!("{}", finished.summary);
            let message = json!({
                "shard": shard.index, "shards": shard.count, "runId": args.run_id,
                "rows": {"scored": finished.summary.scored, "skipped": finished.summary.skipped},
                "part": finished.part,
            });
            (Reason::Done.code(), message)
        }
        Err(failure) => {
            eprintln!("modelship-server predict: {}", failure.message);
            let message = json!({
                "shard": shard.index, "shards": shard.count, "runId": args.run_id,
                "reason": failure.reason.name(), "message": cut(&failure.message),
            });
            (failure.reason.code(), message)
        }
    };
    terminate(&args, message);
    ExitCode::from(code)
}

async fn run_job(
    args: &PredictArgs,
    spec: JobSpec,
    cancel: Arc<AtomicBool>,
) -> Result<job::Finished, Failure> {
    let Some(model) = args.model_args() else {
        return Err(Failure::new(Reason::Usage, "--model is required"));
    };
    let handle = tokio::runtime::Handle::current();
    let prepared = {
        let (spec, handle) = (spec.clone(), handle.clone());
        tokio::task::spawn_blocking(move || job::prepare(&spec, &handle))
            .await
            .map_err(|e| Failure::new(Reason::Retryable, format!("predict panicked: {e}")))??
    };
    let artifact = source::load_artifact(&model.model, model.checksum.sha256.as_deref())
        .await
        .map_err(|e| {
            Failure::new(
                Reason::for_model_fetch(&e),
                format!("model fetch failed: {e}"),
            )
        })?;
    if cancel.load(Ordering::Relaxed) {
        return Err(Failure::new(Reason::Terminated, "stopped by SIGTERM"));
    }
    let info = ModelInfo {
        uri: artifact.origin.clone(),
        sha256: hex::encode(Sha256::digest(&artifact.onnx)),
    };
    let settings = ScoreSettings {
        batch_size: args.batch_size,
        fail_on_bad_rows: args.fail_on_bad_rows(),
        keep: spec.keep_columns.clone().into(),
        cancel,
    };
    let runtime_args = args.runtime.clone();
    tokio::task::spawn_blocking(move || {
        // One batch runs at a time, so it may use every core.
        let options = runtime_args.options(1);
        let backend = runtime::load(&artifact, &options).map_err(|e| {
            Failure::new(Reason::ModelLoadFailed, format!("model load failed: {e}"))
        })?;
        let card = artifact.card.clone().unwrap_or_default();
        job::run(prepared, &spec, backend, &card, info, &settings)
    })
    .await
    .map_err(|e| Failure::new(Reason::Retryable, format!("predict panicked: {e}")))?
}

async fn manifest(args: &PredictArgs) -> ExitCode {
    let (output, shards, run_id) = (
        args.output.clone(),
        args.shards.unwrap_or(0),
        args.run_id.clone().unwrap_or_default(),
    );
    let handle = tokio::runtime::Handle::current();
    let result = {
        let (output, run_id) = (output.clone(), run_id.clone());
        tokio::task::spawn_blocking(move || job::write_manifest(&output, shards, &run_id, &handle))
            .await
            .unwrap_or_else(|e| {
                Err(Failure::new(
                    Reason::Retryable,
                    format!("predict panicked: {e}"),
                ))
            })
    };
    let (code, message) = match result {
        Ok((key, m)) => {
            eprintln!(
                "predict: {} wrote {} parts: {} rows scored, {} skipped",
                key,
                m.parts.len(),
                m.rows.scored,
                m.rows.skipped
            );
            (
                0,
                json!({"runId": run_id, "shards": shards, "rows": m.rows, "manifest": key}),
            )
        }
        Err(failure) => {
            eprintln!("modelship-server predict: {}", failure.message);
            (
                failure.reason.code(),
                json!({"runId": run_id, "shards": shards, "reason": failure.reason.name(), "message": cut(&failure.message)}),
            )
        }
    };
    terminate(args, message);
    ExitCode::from(code)
}

//! `modelship-server predict`: scores CSV, JSON Lines or Parquet offline,
//! with the same runtimes as the server: a local file or standard input, or,
//! as one shard of a Kubernetes Job, a deterministic slice of a prefix of
//! objects (S3 or a mounted volume) written as one part beside a report.
//!
//! Two threads and a bounded channel keep memory flat on any input size: a
//! reader parses rows into batches of `--batch-size` rows, the caller's
//! thread runs each batch on the backend and writes its rows. A bad row is
//! reported with its file and line and skipped (or, with `--bad-rows fail`,
//! ends the run); the closing summary counts the rows scored and skipped, so
//! nothing is dropped silently.
//!
//! The pipeline: `job` (what to read: `storage` lists the input, `shard`
//! says which slice of it is ours; where to write; reports and the
//! manifest) → `read` (a [`read::RowReader`] per format: `csv`, `jsonl`,
//! `parquet`) → [`read::RowSink`] (check against the model's
//! [`layout::Layout`], batch) → the model → `write` (a [`write::RowWriter`]:
//! JSON Lines, CSV, or Parquet in `parquet_write`). Exit codes are [`Reason`]. The
//! command line is `cmd::predict`.

pub mod csv;
pub mod job;
pub mod jsonl;
pub mod layout;
pub mod parquet;
pub mod parquet_write;
pub mod read;
pub mod shard;
pub mod storage;
pub mod write;

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::prepare_inputs;
use crate::runtime::Backend;
use crate::source::SourceError;
use layout::Layout;
use read::{Batch, RowSink, SkippedRow, Stop};
use write::{CsvWriter, JsonLinesWriter, RowWriter, ScoredBatch};

/// Why a run ended, and the process's exit code for it: what a Job's
/// `podFailurePolicy` tells apart (permanent failures fail the Job at once,
/// the rest are retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every row read (scored, or skipped and reported).
    Done,
    /// I/O, network, anything not known to be permanent: retry.
    Retryable,
    /// The flags (or the data's shape against them) cannot work.
    Usage,
    InputNotFound,
    OutputNotEmpty,
    /// The model cannot be fetched and retrying will not help (404, checksum).
    ModelFetchFailed,
    ModelLoadFailed,
    /// A bad row with `--bad-rows fail`.
    BadRows,
    /// SIGTERM: never counted as done.
    Terminated,
}

impl Reason {
    pub fn code(self) -> u8 {
        match self {
            Reason::Done => 0,
            Reason::Retryable => 1,
            Reason::Usage => 2,
            Reason::InputNotFound => 10,
            Reason::OutputNotEmpty => 11,
            Reason::ModelFetchFailed => 12,
            Reason::ModelLoadFailed => 13,
            Reason::BadRows => 14,
            Reason::Terminated => 143,
        }
    }

    /// The name a BatchPrediction's condition carries.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Done => "Done",
            Reason::Retryable => "Retryable",
            Reason::Usage => "InvalidSpec",
            Reason::InputNotFound => "InputNotFound",
            Reason::OutputNotEmpty => "OutputNotEmpty",
            Reason::ModelFetchFailed => "ModelFetchFailed",
            Reason::ModelLoadFailed => "ModelLoadFailed",
            Reason::BadRows => "BadRows",
            Reason::Terminated => "Terminated",
        }
    }

    /// A model that could not be fetched: permanent (12) unless the cause
    /// may pass (a network error, a 5xx, a full disk: 1). `fetch` uses it too.
    pub fn for_model_fetch(e: &SourceError) -> Reason {
        match e {
            SourceError::Read { .. } | SourceError::Write { .. } => Reason::Retryable,
            SourceError::HttpStatus { status, .. } if !status.starts_with('4') => Reason::Retryable,
            _ => Reason::ModelFetchFailed,
        }
    }
}

/// A run that did not finish: why, and the one-line cause.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

impl From<Stop> for Failure {
    fn from(stop: Stop) -> Failure {
        match stop {
            Stop::Fatal(m) => Failure::new(Reason::Retryable, m),
            Stop::Invalid(m) => Failure::new(Reason::Usage, m),
            Stop::BadRow(m) => Failure::new(Reason::BadRows, m),
            Stop::Cancelled => Failure::new(Reason::Terminated, "stopped by SIGTERM"),
            Stop::ScorerGone => Failure::new(Reason::Retryable, "scoring stopped early"),
        }
    }
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
    Parquet,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Csv => "csv",
            OutputFormat::Parquet => "parquet",
        }
    }
}

/// One writer of any output format, over `W`.
pub enum FormatWriter<W: Write + Send> {
    Jsonl(JsonLinesWriter<W>),
    Csv(Box<CsvWriter<W>>),
    Parquet(Box<parquet_write::ParquetWriter<W>>),
}

impl<W: Write + Send> FormatWriter<W> {
    pub fn new(
        format: OutputFormat,
        out: W,
        shown: &str,
        keep: &[String],
        backend: &dyn Backend,
        card: &crate::model::ModelCard,
    ) -> Self {
        let labels = layout::label_output(backend.signature().outputs.as_slice(), card);
        match format {
            OutputFormat::Jsonl => {
                FormatWriter::Jsonl(JsonLinesWriter::new(out, shown, labels, keep))
            }
            OutputFormat::Csv => {
                let outputs = backend
                    .signature()
                    .outputs
                    .iter()
                    .map(|o| {
                        (
                            o.name.clone(),
                            o.shape.iter().skip(1).product::<i64>().max(1) as usize,
                        )
                    })
                    .collect();
                FormatWriter::Csv(Box::new(CsvWriter::new(out, keep, labels, outputs)))
            }
            OutputFormat::Parquet => FormatWriter::Parquet(Box::new(
                parquet_write::ParquetWriter::new(out, keep.to_vec(), labels, backend),
            )),
        }
    }

    /// The underlying writer, everything written and flushed.
    pub fn into_inner(self) -> Result<W, String> {
        match self {
            FormatWriter::Jsonl(w) => w.into_inner(),
            FormatWriter::Csv(w) => w.into_inner(),
            FormatWriter::Parquet(w) => w.into_inner(),
        }
    }
}

impl<W: Write + Send> RowWriter for FormatWriter<W> {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> Result<(), String> {
        match self {
            FormatWriter::Jsonl(w) => w.write_batch(batch),
            FormatWriter::Csv(w) => w.write_batch(batch),
            FormatWriter::Parquet(w) => w.write_batch(batch),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        match self {
            FormatWriter::Jsonl(w) => w.finish(),
            FormatWriter::Csv(w) => w.finish(),
            FormatWriter::Parquet(w) => w.finish(),
        }
    }
}

/// How rows are read and checked.
#[derive(Debug, Clone)]
pub struct ScoreSettings {
    pub batch_size: usize,
    pub fail_on_bad_rows: bool,
    pub keep: Arc<[String]>,
    /// Set by SIGTERM.
    pub cancel: Arc<AtomicBool>,
}

/// What a run did, printed as its last line.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub scored: u64,
    pub skipped: u64,
    pub header: bool,
    pub elapsed: Duration,
    /// The first skipped rows (at most [`read::MAX_LISTED_BAD_ROWS`]).
    pub listed: Vec<SkippedRow>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.scored as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "predict: {} rows scored, {} bad rows skipped{} in {secs:.2}s ({rate:.0} rows/s)",
            self.scored,
            self.skipped,
            if self.header {
                " (header line read),"
            } else {
                ","
            },
        )
    }
}

/// Scores every row of the `pieces` (opened one after the other by the
/// reader thread) with `backend` into `out`.
pub fn score(
    pieces: Vec<job::Planned>,
    backend: &dyn Backend,
    layout: &Layout,
    out: &mut dyn RowWriter,
    settings: &ScoreSettings,
) -> Result<Summary, Failure> {
    let started = Instant::now();
    let progress = progress_bar();
    let (tx, rx) = sync_channel::<Batch>(2);
    let reader = {
        let layout = layout.clone();
        let progress = progress.clone();
        let settings = settings.clone();
        std::thread::spawn(move || {
            let mut sink = RowSink::new(
                &layout,
                settings.keep.clone(),
                settings.batch_size.max(1),
                tx,
                settings.fail_on_bad_rows,
                progress,
                settings.cancel.clone(),
            );
            let mut header = false;
            for planned in pieces {
                let piece = planned.open()?;
                sink.start_file(&piece.name);
                header |= read::reader_for(piece)?.read_rows(&layout, &mut sink)?;
            }
            sink.finish()
                .map(|(skipped, listed)| (header, skipped, listed))
        })
    };
    let scored = score_batches(rx, backend, layout, out, &progress);
    let read = reader
        .join()
        .map_err(|_| Failure::new(Reason::Retryable, "the reader thread panicked"))?;
    progress.finish_and_clear();
    // A reader error (a bad row with --bad-rows fail, an unreadable file)
    // explains why scoring stopped, so it comes first.
    let (header, skipped, listed, scored) = match (read, scored) {
        (Err(Stop::ScorerGone), Err(msg)) | (Ok(_), Err(msg)) => {
            return Err(Failure::new(Reason::Retryable, msg));
        }
        (Err(stop), _) => return Err(stop.into()),
        (Ok((header, skipped, listed)), Ok(scored)) => (header, skipped, listed, scored),
    };
    out.finish()
        .map_err(|m| Failure::new(Reason::Retryable, m))?;
    Ok(Summary {
        scored,
        skipped,
        header,
        elapsed: started.elapsed(),
        listed,
    })
}

fn progress_bar() -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} rows scored, {msg}, {elapsed}")
            .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn score_batches(
    rx: Receiver<Batch>,
    backend: &dyn Backend,
    layout: &Layout,
    out: &mut dyn RowWriter,
    progress: &ProgressBar,
) -> Result<u64, String> {
    let signature = backend.signature();
    let mut scored = 0u64;
    for batch in rx {
        let n = batch.rows.len();
        let tensor = layout.tensor(&batch.values)?;
        let (inputs, _) = prepare_inputs(signature, vec![tensor]).map_err(|e| e.to_string())?;
        let outputs = backend.infer(&inputs).map_err(|e| {
            format!(
                "inference failed on rows {}..={}: {e}",
                batch.rows[0],
                batch.rows[n - 1]
            )
        })?;
        let widths = outputs
            .iter()
            .map(|t| match t.shape().first() {
                Some(&rows) if rows == n => Ok(t.shape()[1..].iter().product::<usize>()),
                _ => Err(format!(
                    "output '{}' has shape {:?}, not {n} rows",
                    t.name(),
                    t.shape()
                )),
            })
            .collect::<Result<Vec<usize>, String>>()?;
        out.write_batch(&ScoredBatch {
            rows: &batch.rows,
            kept: &batch.kept,
            outputs: &outputs,
            widths: &widths,
        })?;
        scored += n as u64;
        progress.inc(n as u64);
        if !progress.is_hidden() {
            let secs = progress.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!("{:.0} rows/s", scored as f64 / secs));
        }
    }
    Ok(scored)
}

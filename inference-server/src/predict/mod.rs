//! `modelship-server predict`: scores a CSV or JSON Lines file offline, with
//! the same runtimes as the server, and writes one JSON line per row.
//!
//! Two threads and a bounded channel keep memory flat on any input size: a
//! reader parses rows into batches of `--batch-size` rows, the caller's
//! thread runs each batch on the backend and writes its rows. A bad row is
//! reported on stderr with its line number and skipped (or, with
//! `--fail-on-bad-rows`, ends the run); the closing summary line counts the
//! rows scored and skipped, so nothing is dropped silently.
//!
//! The pipeline: `read` (open the input, pick a [`read::RowReader`] for its
//! format: `csv`, `jsonl`) → [`read::RowSink`] (check against the model's
//! [`layout::Layout`], batch) → the model → `write` (a [`write::RowWriter`]:
//! JSON Lines). The command line is `cmd::predict`.

pub mod csv;
pub mod jsonl;
pub mod layout;
pub mod read;
pub mod write;

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::prepare_inputs;
use crate::model::ModelCard;
use crate::runtime::Backend;
use layout::{Layout, label_output};
use read::{Batch, InputFormat, RowSink, Stop, open_input, reader_for, sniff_format};
use write::{JsonLinesWriter, RowWriter, ScoredBatch, open_output};

/// What to score and how.
#[derive(Debug, Clone)]
pub struct PredictJob {
    /// A file path, or `-` for standard input.
    pub input: String,
    /// A file path, or `-` for standard output.
    pub output: String,
    pub format: InputFormat,
    /// Rows run through the model at once.
    pub batch_size: usize,
    /// Stop at the first bad row instead of reporting and skipping it.
    pub fail_on_bad_rows: bool,
}

/// Scores every row of `job.input` with `backend` and writes `job.output`.
pub fn predict(
    job: &PredictJob,
    backend: Arc<dyn Backend>,
    card: &ModelCard,
) -> Result<Summary, String> {
    let started = Instant::now();
    let layout = Layout::new(backend.signature().inputs.as_slice(), card)?;
    let mut input = open_input(&job.input)?;
    let format = match job.format {
        InputFormat::Auto => sniff_format(&job.input, &mut input)?,
        f => f,
    };
    let label_classes = label_output(backend.signature().outputs.as_slice(), card);
    let mut out = JsonLinesWriter::new(open_output(&job.output)?, &job.output, label_classes);
    let progress = progress_bar();

    let (tx, rx) = sync_channel::<Batch>(2);
    let reader = {
        let layout = layout.clone();
        let progress = progress.clone();
        let batch_size = job.batch_size.max(1);
        let fail_on_bad_rows = job.fail_on_bad_rows;
        std::thread::spawn(move || {
            let mut sink = RowSink::new(&layout, batch_size, tx, fail_on_bad_rows, progress);
            reader_for(format, input)
                .read_rows(&layout, &mut sink)
                .and_then(|header| sink.finish().map(|skipped| (header, skipped)))
        })
    };
    let scored = score_batches(rx, backend.as_ref(), &layout, &mut out, &progress);
    let read = reader
        .join()
        .map_err(|_| "the reader thread panicked".to_string())?;
    progress.finish_and_clear();
    // A reader error (a bad row with --fail-on-bad-rows, an unreadable file)
    // explains why scoring stopped, so it comes first.
    let (header, skipped, scored) = match (read, scored) {
        (Err(Stop::Fatal(msg)), _) => return Err(msg),
        (_, Err(msg)) => return Err(msg),
        (Err(Stop::ScorerGone), Ok(_)) => return Err("scoring stopped early".to_string()),
        (Ok((header, skipped)), Ok(scored)) => (header, skipped, scored),
    };
    out.finish()?;
    Ok(Summary {
        scored,
        skipped,
        header,
        elapsed: started.elapsed(),
    })
}

/// What a run did, printed as its last line.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub scored: u64,
    pub skipped: u64,
    pub header: bool,
    pub elapsed: Duration,
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

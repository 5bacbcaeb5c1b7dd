//! Reading rows: the input formats, and the sink that checks, batches and
//! counts the rows a reader parses.
//!
//! A format is a [`RowReader`]: it turns its input into rows of `f64`
//! features (in the layout's column order) and hands each to the
//! [`RowSink`], good or bad. `reader_for` picks the reader of a format; a
//! new format (Parquet, say) is one more [`InputFormat`] and one more reader.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::SyncSender;

use indicatif::ProgressBar;

use super::csv::CsvReader;
use super::jsonl::JsonlReader;
use super::layout::Layout;

/// The format of the rows to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Auto,
    Csv,
    Jsonl,
}

/// A parser of one input format.
pub trait RowReader: Send {
    /// Reads every row into `sink`; returns whether a header line was read.
    fn read_rows(self: Box<Self>, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop>;
}

/// The reader of `format` over `input` (`Auto` must be resolved first, by [`sniff_format`]).
pub fn reader_for(format: InputFormat, input: Input) -> Box<dyn RowReader> {
    match format {
        InputFormat::Jsonl => Box::new(JsonlReader::new(input)),
        InputFormat::Csv | InputFormat::Auto => Box::new(CsvReader::new(input)),
    }
}

/// Rows ready to score, with the index of each among the input's data rows.
pub struct Batch {
    pub values: Vec<f64>,
    pub rows: Vec<u64>,
}

/// Why reading stopped early.
#[derive(Debug)]
pub enum Stop {
    Fatal(String),
    /// The scoring side failed and hung up; it reports its own error.
    ScorerGone,
}

/// Collects parsed rows into batches and reports bad ones.
pub struct RowSink {
    width: usize,
    batch_size: usize,
    batch: Batch,
    tx: SyncSender<Batch>,
    /// Index of the next data row (header excluded, bad rows included).
    next_row: u64,
    skipped: u64,
    fail_on_bad_rows: bool,
    progress: ProgressBar,
}

/// Bad rows printed one by one before they are only counted.
const MAX_REPORTED_BAD_ROWS: u64 = 1000;

impl RowSink {
    pub fn new(
        layout: &Layout,
        batch_size: usize,
        tx: SyncSender<Batch>,
        fail_on_bad_rows: bool,
        progress: ProgressBar,
    ) -> Self {
        RowSink {
            width: layout.width,
            batch_size,
            batch: Batch {
                values: Vec::with_capacity(batch_size * layout.width),
                rows: Vec::with_capacity(batch_size),
            },
            tx,
            next_row: 0,
            skipped: 0,
            fail_on_bad_rows,
            progress,
        }
    }

    /// Takes one row of `width` checked values.
    pub fn good(&mut self, values: &[f64]) -> Result<(), Stop> {
        debug_assert_eq!(values.len(), self.width);
        self.batch.values.extend_from_slice(values);
        self.batch.rows.push(self.next_row);
        self.next_row += 1;
        if self.batch.rows.len() >= self.batch_size {
            self.send()?;
        }
        Ok(())
    }

    /// Reports the row on `line` as bad: skipped, or the end of the run.
    pub fn bad(&mut self, line: u64, why: &str) -> Result<(), Stop> {
        let row = self.next_row;
        self.next_row += 1;
        if self.fail_on_bad_rows {
            return Err(Stop::Fatal(format!(
                "line {line} (row {row}): {why} (--fail-on-bad-rows)"
            )));
        }
        self.skipped += 1;
        if self.skipped <= MAX_REPORTED_BAD_ROWS {
            self.progress
                .suspend(|| eprintln!("line {line} (row {row}): {why}; skipped"));
        } else if self.skipped == MAX_REPORTED_BAD_ROWS + 1 {
            self.progress
                .suspend(|| eprintln!("more bad rows: counted in the summary, not listed"));
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), Stop> {
        if self.batch.rows.is_empty() {
            return Ok(());
        }
        let next = Batch {
            values: Vec::with_capacity(self.batch_size * self.width),
            rows: Vec::with_capacity(self.batch_size),
        };
        let full = std::mem::replace(&mut self.batch, next);
        self.tx.send(full).map_err(|_| Stop::ScorerGone)
    }

    /// Sends the last partial batch; returns the number of skipped rows.
    pub fn finish(mut self) -> Result<u64, Stop> {
        self.send()?;
        Ok(self.skipped)
    }
}

/// A readable input, buffered.
pub type Input = BufReader<Box<dyn Read + Send>>;

/// Opens `path` (`-`: standard input).
pub fn open_input(path: &str) -> Result<Input, String> {
    let reader: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?)
    };
    Ok(BufReader::with_capacity(256 * 1024, reader))
}

/// The format of `path`: by its extension, else by its first character
/// (`{` or `[`: JSON Lines, anything else: CSV).
pub fn sniff_format(path: &str, input: &mut Input) -> Result<InputFormat, String> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".csv") || lower.ends_with(".txt") {
        return Ok(InputFormat::Csv);
    }
    if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") || lower.ends_with(".json") {
        return Ok(InputFormat::Jsonl);
    }
    let head = input
        .fill_buf()
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    Ok(match first {
        Some(b'{') | Some(b'[') => InputFormat::Jsonl,
        _ => InputFormat::Csv,
    })
}

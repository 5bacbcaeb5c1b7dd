//! Reading rows: the input formats, the pieces of input a shard reads, and
//! the sink that checks, batches and counts the rows a reader parses.
//!
//! A format is a [`RowReader`]: it turns one [`Piece`] (an object, or its
//! owned slice) into rows of `f64` features (in the layout's column order)
//! plus the values of `--keep-columns`, and hands each to the [`RowSink`],
//! good or bad. `reader_for` picks the reader of a format.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;

use indicatif::ProgressBar;
use serde::Serialize;

use super::csv::CsvReader;
use super::jsonl::JsonlReader;
use super::layout::Layout;
use super::parquet::ParquetReader;
use super::storage::Store;

/// The format of the rows to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Auto,
    Csv,
    Jsonl,
    Parquet,
}

impl InputFormat {
    /// The format a file name says, if it says one.
    pub fn from_name(name: &str) -> Option<InputFormat> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "csv" | "txt" => Some(InputFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(InputFormat::Jsonl),
            "parquet" | "pq" => Some(InputFormat::Parquet),
            _ => None,
        }
    }

    /// The format of content starting with `head`: Parquet's magic, a JSON
    /// line's `{` or `[`, else CSV.
    pub fn sniff(head: &[u8]) -> InputFormat {
        if head.starts_with(b"PAR1") {
            return InputFormat::Parquet;
        }
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => InputFormat::Jsonl,
            _ => InputFormat::Csv,
        }
    }
}

/// Where a piece's bytes come from.
pub enum PieceData {
    /// A stream from the object's first byte (CSV and JSON Lines).
    Stream(Box<dyn Read + Send>),
    /// Random access (Parquet).
    Object {
        store: Store,
        key: String,
        size: u64,
    },
}

/// One object of the input and the byte range of it whose rows are ours.
pub struct Piece {
    /// The object's name in messages and reports.
    pub name: String,
    pub format: InputFormat,
    pub data: PieceData,
    /// Rows whose first byte is in `start..end` are read (`0..u64::MAX`: all).
    pub start: u64,
    pub end: u64,
}

/// A parser of one input format.
pub trait RowReader: Send {
    /// Reads the piece's rows into `sink`; returns whether a header line was read.
    fn read_rows(self: Box<Self>, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop>;
}

/// The reader of `piece` (its format already resolved).
pub fn reader_for(piece: Piece) -> Result<Box<dyn RowReader>, Stop> {
    let Piece {
        name,
        format,
        data,
        start,
        end,
    } = piece;
    let stream = |data: PieceData| -> Result<BufReader<Box<dyn Read + Send>>, Stop> {
        match data {
            PieceData::Stream(r) => Ok(BufReader::with_capacity(256 * 1024, r)),
            PieceData::Object { store, key, size } => store
                .open(&key, 0, size)
                .map(|r| BufReader::with_capacity(256 * 1024, r))
                .map_err(|e| Stop::Fatal(e.to_string())),
        }
    };
    Ok(match format {
        InputFormat::Jsonl => Box::new(JsonlReader::new(stream(data)?, start, end)),
        InputFormat::Csv | InputFormat::Auto => Box::new(CsvReader::new(stream(data)?, start, end)),
        InputFormat::Parquet => match data {
            PieceData::Object { store, key, size } => {
                Box::new(ParquetReader::new(store, key, size, name, start, end))
            }
            PieceData::Stream(_) => {
                return Err(Stop::Invalid(format!(
                    "{name}: Parquet needs random access; it cannot be read from standard input"
                )));
            }
        },
    })
}

/// A value of a `--keep-columns` column, carried beside the predictions.
#[derive(Debug, Clone, PartialEq)]
pub enum Kept {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A JSON array or object, as its text.
    Json(String),
}

impl Kept {
    /// The value as text (CSV cells; Parquet string columns); null is empty.
    pub fn text(&self) -> String {
        match self {
            Kept::Null => String::new(),
            Kept::Bool(b) => b.to_string(),
            Kept::Int(i) => i.to_string(),
            Kept::Float(x) => x.to_string(),
            Kept::Str(s) | Kept::Json(s) => s.clone(),
        }
    }
}

/// Rows ready to score, with the index of each among its file's data rows.
pub struct Batch {
    pub values: Vec<f64>,
    pub rows: Vec<u64>,
    /// `rows.len() * keep` values, row by row.
    pub kept: Vec<Kept>,
}

/// Why reading stopped early.
#[derive(Debug)]
pub enum Stop {
    /// An I/O failure (worth a retry).
    Fatal(String),
    /// The input cannot be scored as given (a header that does not fit the
    /// model, a kept column that is not there, a file that is not Parquet).
    Invalid(String),
    /// A bad row with `--bad-rows fail`.
    BadRow(String),
    /// SIGTERM.
    Cancelled,
    /// The scoring side failed and hung up; it reports its own error.
    ScorerGone,
}

/// A skipped row, as the shard's report lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedRow {
    pub file: String,
    /// The line in a text file (1-based); `None` in Parquet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The row's index among the file's data rows.
    pub row: u64,
    pub reason: String,
}

/// Bad rows printed on stderr one by one before they are only counted.
const MAX_PRINTED_BAD_ROWS: u64 = 1000;
/// Bad rows listed in a report.
pub const MAX_LISTED_BAD_ROWS: usize = 100;

/// Collects parsed rows into batches and reports bad ones.
pub struct RowSink {
    width: usize,
    /// The `--keep-columns`, in order.
    pub keep: Arc<[String]>,
    batch_size: usize,
    batch: Batch,
    tx: SyncSender<Batch>,
    skipped: u64,
    /// The first bad rows, for the report.
    pub listed: Vec<SkippedRow>,
    fail_on_bad_rows: bool,
    progress: ProgressBar,
    cancel: Arc<AtomicBool>,
    /// The file being read, for messages.
    file: String,
}

impl RowSink {
    pub fn new(
        layout: &Layout,
        keep: Arc<[String]>,
        batch_size: usize,
        tx: SyncSender<Batch>,
        fail_on_bad_rows: bool,
        progress: ProgressBar,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        RowSink {
            width: layout.width,
            batch: empty_batch(batch_size, layout.width, keep.len()),
            keep,
            batch_size,
            tx,
            skipped: 0,
            listed: Vec::new(),
            fail_on_bad_rows,
            progress,
            cancel,
            file: String::new(),
        }
    }

    /// Names the file the next rows come from.
    pub fn start_file(&mut self, name: &str) {
        self.file = name.to_string();
    }

    /// The file being read.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// Whether SIGTERM asked the run to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Takes row `row` of the file: `width` checked values and `keep` kept ones.
    pub fn good(&mut self, row: u64, values: &[f64], kept: &mut Vec<Kept>) -> Result<(), Stop> {
        debug_assert_eq!(values.len(), self.width);
        debug_assert_eq!(kept.len(), self.keep.len());
        self.batch.values.extend_from_slice(values);
        self.batch.kept.append(kept);
        self.batch.rows.push(row);
        if self.batch.rows.len() >= self.batch_size {
            self.send()?;
        }
        Ok(())
    }

    /// Reports row `row` (on `line` of a text file) as bad: skipped, or the end of the run.
    pub fn bad(&mut self, line: Option<u64>, row: u64, why: &str) -> Result<(), Stop> {
        let at = match line {
            Some(line) => format!("{}: line {line} (row {row})", self.file),
            None => format!("{}: row {row}", self.file),
        };
        if self.fail_on_bad_rows {
            return Err(Stop::BadRow(format!("{at}: {why} (--bad-rows fail)")));
        }
        self.skipped += 1;
        if self.listed.len() < MAX_LISTED_BAD_ROWS {
            self.listed.push(SkippedRow {
                file: self.file.clone(),
                line,
                row,
                reason: why.to_string(),
            });
        }
        if self.skipped <= MAX_PRINTED_BAD_ROWS {
            self.progress.suspend(|| eprintln!("{at}: {why}; skipped"));
        } else if self.skipped == MAX_PRINTED_BAD_ROWS + 1 {
            self.progress
                .suspend(|| eprintln!("more bad rows: counted in the summary, not listed"));
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), Stop> {
        if self.cancelled() {
            return Err(Stop::Cancelled);
        }
        if self.batch.rows.is_empty() {
            return Ok(());
        }
        let next = empty_batch(self.batch_size, self.width, self.keep.len());
        let full = std::mem::replace(&mut self.batch, next);
        self.tx.send(full).map_err(|_| Stop::ScorerGone)
    }

    /// Sends the last partial batch; returns the number of skipped rows and the listed ones.
    pub fn finish(mut self) -> Result<(u64, Vec<SkippedRow>), Stop> {
        self.send()?;
        Ok((self.skipped, std::mem::take(&mut self.listed)))
    }
}

fn empty_batch(batch_size: usize, width: usize, keep: usize) -> Batch {
    Batch {
        values: Vec::with_capacity(batch_size * width),
        rows: Vec::with_capacity(batch_size),
        kept: Vec::with_capacity(batch_size * keep),
    }
}

/// Standard input as a piece (the whole of it), its format sniffed when `auto`.
pub fn stdin_piece(format: InputFormat) -> Result<Piece, String> {
    let mut input = BufReader::with_capacity(256 * 1024, io::stdin());
    let format = match format {
        InputFormat::Auto => {
            let head = input
                .fill_buf()
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            InputFormat::sniff(head)
        }
        f => f,
    };
    Ok(Piece {
        name: "-".to_string(),
        format,
        data: PieceData::Stream(Box::new(input)),
        start: 0,
        end: u64::MAX,
    })
}

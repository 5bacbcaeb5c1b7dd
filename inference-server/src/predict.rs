//! `modelship-server predict`: scores a CSV or JSON Lines file offline, with
//! the same runtimes as the server, and writes one JSON line per row.
//!
//! Two threads and a bounded channel keep memory flat on any input size: a
//! reader parses rows into batches of `--batch-size` rows, the caller's
//! thread runs each batch on the backend and writes its rows. A bad row is
//! reported on stderr with its line number and skipped (or, with
//! `--fail-on-bad-rows`, ends the run); the closing summary line counts the
//! rows scored and skipped, so nothing is dropped silently.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use half::f16;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::backend::Backend;
use crate::backends::{self, RuntimeChoice, RuntimeOptions};
use crate::engine::prepare_inputs;
use crate::model::ModelCard;
use crate::source;
use crate::tensor::{DataType, Tensor, TensorData, TensorSpec};

/// Arguments of `modelship-server predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// The model: a path, a directory with one .onnx file, file://, http(s)://, s3:// or builtin://NAME.
    #[arg(long, env = "MODELSHIP_MODEL")]
    pub model: String,
    /// Expected SHA-256 of the model file (hex).
    #[arg(long, env = "MODELSHIP_SHA256")]
    pub sha256: Option<String>,
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
    /// Model runtime.
    #[arg(long, env = "MODELSHIP_RUNTIME", value_enum, default_value = "auto")]
    pub runtime: RuntimeChoice,
    /// Path to libonnxruntime.so (default: searched in the usual places).
    #[arg(long, env = "MODELSHIP_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Threads one batch may use (0 = all cores).
    #[arg(long, env = "MODELSHIP_INTRA_OP_THREADS", default_value_t = 0)]
    pub intra_op_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    Auto,
    Csv,
    Jsonl,
}

/// Runs `predict`: 0 when every row was read (scored or reported and
/// skipped), 1 on a failure, with its cause on stderr.
pub async fn run(args: PredictArgs) -> ExitCode {
    let artifact = match source::load_artifact(&args.model, args.sha256.as_deref()).await {
        Ok(a) => a,
        Err(e) => return fail(&format!("model fetch failed: {e}")),
    };
    let result = tokio::task::spawn_blocking(move || {
        let threads = match args.intra_op_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let options = RuntimeOptions {
            runtime: args.runtime,
            ort_library: args.ort_library.clone(),
            intra_op_threads: Some(threads),
        };
        let backend =
            backends::load(&artifact, &options).map_err(|e| format!("model load failed: {e}"))?;
        let card = artifact.card.clone().unwrap_or_default();
        predict(&args, backend, &card)
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

/// Scores every row of `args.input` with `backend` and writes `args.output`.
pub fn predict(
    args: &PredictArgs,
    backend: Arc<dyn Backend>,
    card: &ModelCard,
) -> Result<Summary, String> {
    let started = Instant::now();
    let layout = Layout::new(backend.signature().inputs.as_slice(), card)?;
    let mut input = open_input(&args.input)?;
    let format = match args.format {
        InputFormat::Auto => sniff_format(&args.input, &mut input)?,
        f => f,
    };
    let mut out = open_output(&args.output)?;
    let progress = progress_bar();
    let label_classes = label_output(backend.signature().outputs.as_slice(), card);

    let (tx, rx) = sync_channel::<Batch>(2);
    let reader = {
        let layout = layout.clone();
        let progress = progress.clone();
        let batch_size = args.batch_size.max(1);
        let fail_on_bad_rows = args.fail_on_bad_rows;
        std::thread::spawn(move || {
            let mut sink = RowSink::new(&layout, batch_size, tx, fail_on_bad_rows, progress);
            let read = match format {
                InputFormat::Jsonl => read_jsonl(input, &layout, &mut sink),
                _ => read_csv(input, &layout, &mut sink),
            };
            read.and_then(|header| sink.finish().map(|skipped| (header, skipped)))
        })
    };
    let scored = score_batches(
        rx,
        backend.as_ref(),
        &layout,
        label_classes.as_ref(),
        &mut out,
        &progress,
    );
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
    out.flush()
        .map_err(|e| format!("cannot write {}: {e}", args.output))?;
    Ok(Summary {
        scored,
        skipped,
        header,
        elapsed: started.elapsed(),
    })
}

// ---- the model's side ------------------------------------------------------

/// The one `[-1, F]` numeric input that rows fill, and the names a row may
/// use for its columns.
#[derive(Debug, Clone)]
struct Layout {
    input: TensorSpec,
    width: usize,
    /// Feature names from the model card, one per column (may be empty).
    features: Vec<String>,
}

impl Layout {
    fn new(inputs: &[TensorSpec], card: &ModelCard) -> Result<Layout, String> {
        let describe = || {
            inputs
                .iter()
                .map(|s| format!("{} {} {:?}", s.name, s.datatype, s.shape))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let [input] = inputs else {
            return Err(format!(
                "predict scores models with one input of shape [-1, F]; this model has: {}",
                describe()
            ));
        };
        let width = match input.shape.as_slice() {
            [b, f] if *b < 0 && *f > 0 => *f as usize,
            _ => {
                return Err(format!(
                    "predict scores models with one input of shape [-1, F]; this model has: {}",
                    describe()
                ));
            }
        };
        if input.datatype == DataType::Bytes {
            return Err(format!(
                "input '{}' is BYTES; predict reads numbers",
                input.name
            ));
        }
        let features = if card.feature_names.len() == width {
            card.feature_names.clone()
        } else {
            Vec::new()
        };
        Ok(Layout {
            input: input.clone(),
            width,
            features,
        })
    }

    /// Checks that `x` fits the input's datatype.
    fn check(&self, x: f64) -> Result<(), String> {
        let dt = self.input.datatype;
        if !x.is_finite() {
            return Err(format!("{x} is not a finite number"));
        }
        let (lo, hi) = match dt {
            DataType::Fp16 | DataType::Fp32 | DataType::Fp64 => return Ok(()),
            DataType::Bool => (0.0, 1.0),
            DataType::Int8 => (i8::MIN as f64, i8::MAX as f64),
            DataType::Int16 => (i16::MIN as f64, i16::MAX as f64),
            DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::Int64 => (i64::MIN as f64, i64::MAX as f64),
            DataType::Uint8 => (0.0, u8::MAX as f64),
            DataType::Uint16 => (0.0, u16::MAX as f64),
            DataType::Uint32 => (0.0, u32::MAX as f64),
            DataType::Uint64 => (0.0, u64::MAX as f64),
            DataType::Bytes => unreachable!("refused by Layout::new"),
        };
        if x.fract() != 0.0 || x < lo || x > hi {
            return Err(format!("{x} is not a valid {dt} value"));
        }
        Ok(())
    }

    /// The batch's values as the input's datatype (already checked).
    fn tensor(&self, values: &[f64]) -> Result<Tensor, String> {
        let data = match self.input.datatype {
            DataType::Fp32 => TensorData::Fp32(values.iter().map(|&x| x as f32).collect()),
            DataType::Fp64 => TensorData::Fp64(values.to_vec()),
            DataType::Fp16 => TensorData::Fp16(values.iter().map(|&x| f16::from_f64(x)).collect()),
            DataType::Bool => TensorData::Bool(values.iter().map(|&x| x != 0.0).collect()),
            DataType::Int8 => TensorData::Int8(values.iter().map(|&x| x as i8).collect()),
            DataType::Int16 => TensorData::Int16(values.iter().map(|&x| x as i16).collect()),
            DataType::Int32 => TensorData::Int32(values.iter().map(|&x| x as i32).collect()),
            DataType::Int64 => TensorData::Int64(values.iter().map(|&x| x as i64).collect()),
            DataType::Uint8 => TensorData::Uint8(values.iter().map(|&x| x as u8).collect()),
            DataType::Uint16 => TensorData::Uint16(values.iter().map(|&x| x as u16).collect()),
            DataType::Uint32 => TensorData::Uint32(values.iter().map(|&x| x as u32).collect()),
            DataType::Uint64 => TensorData::Uint64(values.iter().map(|&x| x as u64).collect()),
            DataType::Bytes => unreachable!("refused by Layout::new"),
        };
        let rows = values.len() / self.width;
        Tensor::new(self.input.name.clone(), vec![rows, self.width], data)
            .map_err(|e| e.to_string())
    }
}

/// The classifier's label output and its class names, when the card has them.
struct LabelClasses {
    output: String,
    classes: Vec<String>,
}

fn label_output(outputs: &[TensorSpec], card: &ModelCard) -> Option<LabelClasses> {
    if card.class_labels.is_empty() {
        return None;
    }
    outputs
        .iter()
        .find(|o| {
            o.name == "label"
                && matches!(
                    o.datatype,
                    DataType::Int64 | DataType::Int32 | DataType::Uint64 | DataType::Uint32
                )
        })
        .map(|o| LabelClasses {
            output: o.name.clone(),
            classes: card.class_labels.clone(),
        })
}

// ---- reading -------------------------------------------------------------

/// Rows ready to score, with the index of each among the input's data rows.
struct Batch {
    values: Vec<f64>,
    rows: Vec<u64>,
}

/// Why reading stopped early.
#[derive(Debug)]
enum Stop {
    Fatal(String),
    /// The scoring side failed and hung up; it reports its own error.
    ScorerGone,
}

/// Collects parsed rows into batches and reports bad ones.
struct RowSink {
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
    fn new(
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
    fn good(&mut self, values: &[f64]) -> Result<(), Stop> {
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
    fn bad(&mut self, line: u64, why: &str) -> Result<(), Stop> {
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
    fn finish(mut self) -> Result<u64, Stop> {
        self.send()?;
        Ok(self.skipped)
    }
}

fn open_input(path: &str) -> Result<BufReader<Box<dyn Read + Send>>, String> {
    let reader: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?)
    };
    Ok(BufReader::with_capacity(256 * 1024, reader))
}

fn sniff_format(
    path: &str,
    input: &mut BufReader<Box<dyn Read + Send>>,
) -> Result<InputFormat, String> {
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

fn parse_cell(cell: &[u8]) -> Option<f64> {
    std::str::from_utf8(cell).ok()?.trim().parse::<f64>().ok()
}

/// Reads CSV: a first line with a cell that is not a number is a header. A
/// header that names every feature of the model card picks the columns by
/// name (in any order, extra columns ignored); otherwise columns are taken
/// in order and a row must have exactly one per feature. Returns whether a
/// header was read.
fn read_csv(input: impl Read, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut columns: Option<Vec<usize>> = None; // feature j -> column index
    let mut expected_len = layout.width;
    let mut header = false;
    let mut first = true;
    let mut values = Vec::with_capacity(layout.width);
    loop {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Stop::Fatal(format!("line {line}: cannot read CSV: {e}"))
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if std::mem::take(&mut first) && record.iter().any(|c| parse_cell(c).is_none()) {
            header = true;
            let names: Vec<String> = record
                .iter()
                .map(|c| String::from_utf8_lossy(c).trim().to_string())
                .collect();
            let by_name: Option<Vec<usize>> = if layout.features.is_empty() {
                None
            } else {
                layout
                    .features
                    .iter()
                    .map(|f| names.iter().position(|n| n == f))
                    .collect()
            };
            match by_name {
                Some(idx) => {
                    columns = Some(idx);
                    expected_len = names.len();
                }
                None if names.len() == layout.width => {}
                None => {
                    let want = if layout.features.is_empty() {
                        String::new()
                    } else {
                        format!(" (or columns named {})", layout.features.join(", "))
                    };
                    return Err(Stop::Fatal(format!(
                        "line {line}: the header has {} columns but the model takes {} features{want}",
                        names.len(),
                        layout.width
                    )));
                }
            }
            continue;
        }
        if record.len() != expected_len {
            sink.bad(
                line,
                &format!("expected {expected_len} values, got {}", record.len()),
            )?;
            continue;
        }
        values.clear();
        let mut problem = None;
        for j in 0..layout.width {
            let col = columns.as_ref().map_or(j, |c| c[j]);
            let cell = &record[col];
            match parse_cell(cell).ok_or_else(|| {
                format!(
                    "column {}: {:?} is not a number",
                    col + 1,
                    String::from_utf8_lossy(cell)
                )
            }) {
                Ok(x) => match layout.check(x) {
                    Ok(()) => values.push(x),
                    Err(why) => {
                        problem = Some(format!("column {}: {why}", col + 1));
                        break;
                    }
                },
                Err(why) => {
                    problem = Some(why);
                    break;
                }
            }
        }
        match problem {
            Some(why) => sink.bad(line, &why)?,
            None => sink.good(&values)?,
        }
    }
    Ok(header)
}

/// Reads JSON Lines: each line an array of the features' values, an object
/// keyed by feature name, or an object with the input's name holding the
/// array. Blank lines are ignored.
fn read_jsonl(mut input: impl BufRead, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop> {
    let mut line = String::new();
    let mut number = 0u64;
    let mut values = Vec::with_capacity(layout.width);
    loop {
        line.clear();
        let n = input
            .read_line(&mut line)
            .map_err(|e| Stop::Fatal(format!("line {}: cannot read: {e}", number + 1)))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        values.clear();
        match json_row(&line, layout, &mut values) {
            Ok(()) => sink.good(&values)?,
            Err(why) => sink.bad(number, &why)?,
        }
    }
    Ok(false)
}

fn json_row(line: &str, layout: &Layout, values: &mut Vec<f64>) -> Result<(), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let number = |v: &Value, what: &dyn Fn() -> String| -> Result<f64, String> {
        let x = v
            .as_f64()
            .ok_or_else(|| format!("{}: {v} is not a number", what()))?;
        layout
            .check(x)
            .map_err(|why| format!("{}: {why}", what()))?;
        Ok(x)
    };
    let array = |items: &[Value]| -> Result<Vec<f64>, String> {
        if items.len() != layout.width {
            return Err(format!(
                "expected {} values, got {}",
                layout.width,
                items.len()
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| number(v, &|| format!("value {}", i + 1)))
            .collect()
    };
    match &value {
        Value::Array(items) => values.extend(array(items)?),
        Value::Object(map) => {
            if let Some(v) = map.get(&layout.input.name) {
                let items = v.as_array().ok_or_else(|| {
                    format!(
                        "'{}' must be an array of {} numbers",
                        layout.input.name, layout.width
                    )
                })?;
                values.extend(array(items)?);
            } else if layout.features.is_empty() {
                return Err(format!(
                    "an object row needs the key '{}' (an array of {} numbers); the model card names no features",
                    layout.input.name, layout.width
                ));
            } else {
                for f in &layout.features {
                    let v = map.get(f).ok_or_else(|| {
                        format!(
                            "missing feature '{f}' (or '{}' with all {} values)",
                            layout.input.name, layout.width
                        )
                    })?;
                    values.push(number(v, &|| format!("'{f}'"))?);
                }
            }
        }
        other => return Err(format!("expected an array or an object, got {other}")),
    }
    Ok(())
}

// ---- scoring and writing ---------------------------------------------------

fn open_output(path: &str) -> Result<BufWriter<Box<dyn Write>>, String> {
    let writer: Box<dyn Write> = if path == "-" {
        Box::new(io::stdout())
    } else {
        Box::new(File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?)
    };
    Ok(BufWriter::with_capacity(256 * 1024, writer))
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
    labels: Option<&LabelClasses>,
    out: &mut impl Write,
    progress: &ProgressBar,
) -> Result<u64, String> {
    let signature = backend.signature();
    let mut scored = 0u64;
    let mut line = Vec::with_capacity(256);
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
            .map(|t| match t.shape.first() {
                Some(&rows) if rows == n => Ok(t.shape[1..].iter().product::<usize>()),
                _ => Err(format!(
                    "output '{}' has shape {:?}, not {n} rows",
                    t.name, t.shape
                )),
            })
            .collect::<Result<Vec<usize>, String>>()?;
        for (r, &row) in batch.rows.iter().enumerate() {
            line.clear();
            write_row(&mut line, row, r, &outputs, &widths, labels).map_err(|e| e.to_string())?;
            out.write_all(&line)
                .map_err(|e| format!("cannot write the output: {e}"))?;
        }
        scored += n as u64;
        progress.inc(n as u64);
        if !progress.is_hidden() {
            let secs = progress.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!("{:.0} rows/s", scored as f64 / secs));
        }
    }
    Ok(scored)
}

/// Writes `{"row": N, "<output>": value-or-array, ...}` for row `r` of the batch,
/// with `"class"` after a classifier's label when the card names the classes.
fn write_row(
    line: &mut Vec<u8>,
    row: u64,
    r: usize,
    outputs: &[Tensor],
    widths: &[usize],
    labels: Option<&LabelClasses>,
) -> serde_json::Result<()> {
    write!(line, "{{\"row\":{row}").expect("writing to a Vec");
    for (t, &w) in outputs.iter().zip(widths) {
        line.push(b',');
        serde_json::to_writer(&mut *line, &t.name)?;
        line.push(b':');
        let (start, end) = (r * w, (r + 1) * w);
        let scalar = w == 1;
        if !scalar {
            line.push(b'[');
        }
        write_elements(line, &t.data, start, end)?;
        if !scalar {
            line.push(b']');
        }
        if let Some(l) = labels.filter(|l| l.output == t.name && scalar) {
            let class = match &t.data {
                TensorData::Int64(v) => usize::try_from(v[start]).ok(),
                TensorData::Int32(v) => usize::try_from(v[start]).ok(),
                TensorData::Uint64(v) => usize::try_from(v[start]).ok(),
                TensorData::Uint32(v) => usize::try_from(v[start]).ok(),
                _ => None,
            };
            if let Some(name) = class.and_then(|i| l.classes.get(i)) {
                line.extend_from_slice(b",\"class\":");
                serde_json::to_writer(&mut *line, name)?;
            }
        }
    }
    line.extend_from_slice(b"}\n");
    Ok(())
}

fn write_elements(
    line: &mut Vec<u8>,
    data: &TensorData,
    start: usize,
    end: usize,
) -> serde_json::Result<()> {
    macro_rules! each {
        ($v:expr, $map:expr) => {
            for (i, x) in $v[start..end].iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                serde_json::to_writer(&mut *line, &$map(x))?;
            }
        };
    }
    match data {
        TensorData::Bool(v) => each!(v, |x: &bool| *x),
        TensorData::Uint8(v) => each!(v, |x: &u8| *x),
        TensorData::Uint16(v) => each!(v, |x: &u16| *x),
        TensorData::Uint32(v) => each!(v, |x: &u32| *x),
        TensorData::Uint64(v) => each!(v, |x: &u64| *x),
        TensorData::Int8(v) => each!(v, |x: &i8| *x),
        TensorData::Int16(v) => each!(v, |x: &i16| *x),
        TensorData::Int32(v) => each!(v, |x: &i32| *x),
        TensorData::Int64(v) => each!(v, |x: &i64| *x),
        TensorData::Fp16(v) => each!(v, |x: &f16| f32::from(*x)),
        TensorData::Fp32(v) => each!(v, |x: &f32| *x),
        TensorData::Fp64(v) => each!(v, |x: &f64| *x),
        TensorData::Bytes(v) => each!(v, |x: &Vec<u8>| String::from_utf8_lossy(x).into_owned()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris_layout() -> Layout {
        let card = ModelCard {
            feature_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            ..Default::default()
        };
        let spec = TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 4],
        };
        Layout::new(&[spec], &card).unwrap()
    }

    #[test]
    fn json_rows_are_arrays_or_objects() {
        let layout = iris_layout();
        let mut v = Vec::new();
        json_row("[1,2,3,4]", &layout, &mut v).unwrap();
        json_row(r#"{"input":[1,2,3,4]}"#, &layout, &mut v).unwrap();
        json_row(r#"{"d":4,"c":3,"b":2,"a":1,"id":"x"}"#, &layout, &mut v).unwrap();
        assert_eq!(v, [1.0, 2.0, 3.0, 4.0].repeat(3));
        let bad = [
            ("[1,2,3]", "expected 4 values, got 3"),
            (r#"{"a":1,"b":2,"c":3}"#, "missing feature 'd'"),
            (r#"[1,2,"x",4]"#, "value 3: \"x\" is not a number"),
            ("[1,2,3,", "invalid JSON"),
            ("7", "expected an array or an object"),
        ];
        for (line, want) in bad {
            let err = json_row(line, &layout, &mut v).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn integer_inputs_refuse_fractions_and_out_of_range_values() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Uint8,
            shape: vec![-1, 1],
        };
        let layout = Layout::new(&[spec], &ModelCard::default()).unwrap();
        assert!(layout.check(3.0).is_ok());
        assert!(layout.check(3.5).is_err());
        assert!(layout.check(256.0).is_err());
        assert!(layout.check(f64::NAN).is_err());
    }

    #[test]
    fn rows_are_written_as_json_lines_with_class_names() {
        let label = Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2])).unwrap();
        let probs = Tensor::new(
            "probabilities",
            vec![2, 2],
            TensorData::Fp32(vec![0.75, 0.25, 0.5, 0.5]),
        )
        .unwrap();
        let labels = LabelClasses {
            output: "label".into(),
            classes: vec!["setosa".into(), "versicolor".into(), "virginica".into()],
        };
        let mut line = Vec::new();
        write_row(&mut line, 7, 1, &[label, probs], &[1, 2], Some(&labels)).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"row\":7,\"label\":2,\"class\":\"virginica\",\"probabilities\":[0.5,0.5]}\n"
        );
    }

    #[test]
    fn models_without_one_matrix_input_are_refused() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 3, 3],
        };
        let err = Layout::new(&[spec], &ModelCard::default()).unwrap_err();
        assert!(err.contains("one input of shape [-1, F]"), "{err}");
    }
}

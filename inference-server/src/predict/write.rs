//! Writing scored rows: JSON Lines (one object per row, `{"row": N, ...}`,
//! with `"class"` after a classifier's label when the card names the
//! classes) and CSV; Parquet is `parquet.rs`. `--keep-columns` come right
//! after `row`.
//!
//! A format is a [`RowWriter`]; JSON values are written by the protocol's
//! one JSON writer of tensor data (`protocol::json_data`), so a row reads as
//! the same numbers an HTTP response would carry.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use super::layout::LabelClasses;
use super::read::Kept;
use crate::protocol::json_data::{FlatData, Scalar};
use crate::tensor::Tensor;

/// The model's outputs for one batch of rows.
pub struct ScoredBatch<'a> {
    /// The index of each row among its file's data rows.
    pub rows: &'a [u64],
    /// `rows.len()` times the kept columns, row by row.
    pub kept: &'a [Kept],
    /// One tensor per model output, `rows.len()` rows each.
    pub outputs: &'a [Tensor],
    /// Elements per row of each output.
    pub widths: &'a [usize],
}

/// A writer of one output format.
pub trait RowWriter {
    /// Writes every row of a scored batch.
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> Result<(), String>;
    /// Flushes what is buffered; the output is complete after it.
    fn finish(&mut self) -> Result<(), String>;
}

/// Opens `path` for writing (`-`: standard output).
pub fn open_output(path: &str) -> Result<BufWriter<Box<dyn Write + Send>>, String> {
    let writer: Box<dyn Write + Send> = if path == "-" {
        Box::new(io::stdout())
    } else {
        Box::new(File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?)
    };
    Ok(BufWriter::with_capacity(256 * 1024, writer))
}

/// JSON Lines, one object per row.
pub struct JsonLinesWriter<W: Write> {
    out: W,
    /// Where `out` goes, for error messages.
    path: String,
    labels: Option<LabelClasses>,
    /// The kept columns' names, already JSON-encoded.
    keep: Vec<String>,
    line: Vec<u8>,
}

impl<W: Write> JsonLinesWriter<W> {
    pub fn new(out: W, path: &str, labels: Option<LabelClasses>, keep: &[String]) -> Self {
        JsonLinesWriter {
            out,
            path: path.to_string(),
            labels,
            keep: keep
                .iter()
                .map(|k| serde_json::to_string(k).expect("a string serializes"))
                .collect(),
            line: Vec::with_capacity(256),
        }
    }

    /// The writer, flushed.
    pub fn into_inner(mut self) -> Result<W, String> {
        self.finish()?;
        Ok(self.out)
    }
}

impl<W: Write> RowWriter for JsonLinesWriter<W> {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> Result<(), String> {
        for (r, &row) in batch.rows.iter().enumerate() {
            self.line.clear();
            write_row(
                &mut self.line,
                row,
                r,
                batch,
                &self.keep,
                self.labels.as_ref(),
            )
            .map_err(|e| e.to_string())?;
            self.out
                .write_all(&self.line)
                .map_err(|e| format!("cannot write the output: {e}"))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.out
            .flush()
            .map_err(|e| format!("cannot write {}: {e}", self.path))
    }
}

fn write_kept(line: &mut Vec<u8>, value: &Kept) -> serde_json::Result<()> {
    match value {
        Kept::Null => line.extend_from_slice(b"null"),
        Kept::Bool(b) => serde_json::to_writer(&mut *line, b)?,
        Kept::Int(i) => serde_json::to_writer(&mut *line, i)?,
        Kept::Float(x) => serde_json::to_writer(&mut *line, x)?,
        Kept::Str(s) => serde_json::to_writer(&mut *line, s)?,
        Kept::Json(text) => line.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

/// Writes row `r` of the batch (row `row` of the input) as one JSON line.
fn write_row(
    line: &mut Vec<u8>,
    row: u64,
    r: usize,
    batch: &ScoredBatch<'_>,
    keep: &[String],
    labels: Option<&LabelClasses>,
) -> serde_json::Result<()> {
    write!(line, "{{\"row\":{row}").expect("writing to a Vec");
    for (c, name) in keep.iter().enumerate() {
        line.push(b',');
        line.extend_from_slice(name.as_bytes());
        line.push(b':');
        write_kept(line, &batch.kept[r * keep.len() + c])?;
    }
    for (t, &w) in batch.outputs.iter().zip(batch.widths) {
        line.push(b',');
        serde_json::to_writer(&mut *line, t.name())?;
        line.push(b':');
        let (start, end) = (r * w, (r + 1) * w);
        if w == 1 {
            serde_json::to_writer(&mut *line, &Scalar(t.data(), start))?;
        } else {
            serde_json::to_writer(&mut *line, &FlatData::range(t.data(), start, end))?;
        }
        let class = labels
            .filter(|l| l.output == t.name() && w == 1)
            .and_then(|l| l.class_of(t.data(), start));
        if let Some(name) = class {
            line.extend_from_slice(b",\"class\":");
            serde_json::to_writer(&mut *line, name)?;
        }
    }
    line.extend_from_slice(b"}\n");
    Ok(())
}

/// CSV with a header line: `row`, the kept columns, then each output (one
/// column per value: `probabilities_0`, `probabilities_1`, ...; `class` after
/// a classifier's label).
pub struct CsvWriter<W: Write> {
    out: csv::Writer<W>,
    keep: Vec<String>,
    labels: Option<LabelClasses>,
    /// `(name, values per row)` from the signature, for a part with no rows.
    outputs: Vec<(String, usize)>,
    header_written: bool,
    cells: Vec<String>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(
        out: W,
        keep: &[String],
        labels: Option<LabelClasses>,
        outputs: Vec<(String, usize)>,
    ) -> Self {
        CsvWriter {
            out: csv::Writer::from_writer(out),
            keep: keep.to_vec(),
            labels,
            outputs,
            header_written: false,
            cells: Vec::new(),
        }
    }

    fn header(&mut self, outputs: &[(String, usize)]) -> Result<(), String> {
        let mut names = vec!["row".to_string()];
        names.extend(self.keep.iter().cloned());
        for (name, w) in outputs {
            if *w == 1 {
                names.push(name.clone());
            } else {
                names.extend((0..*w).map(|i| format!("{name}_{i}")));
            }
            if *w == 1 && self.labels.as_ref().is_some_and(|l| &l.output == name) {
                names.push("class".to_string());
            }
        }
        self.header_written = true;
        self.out
            .write_record(&names)
            .map_err(|e| format!("cannot write CSV: {e}"))
    }

    /// The writer, flushed (a part with no rows gets the header alone).
    pub fn into_inner(mut self) -> Result<W, String> {
        if !self.header_written {
            let outputs = self.outputs.clone();
            self.header(&outputs)?;
        }
        self.out
            .into_inner()
            .map_err(|e| format!("cannot write CSV: {}", e.error()))
    }
}

/// A JSON scalar as a CSV cell: strings without their quotes.
fn cell(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

impl<W: Write> RowWriter for CsvWriter<W> {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> Result<(), String> {
        if !self.header_written {
            let outputs: Vec<(String, usize)> = batch
                .outputs
                .iter()
                .zip(batch.widths)
                .map(|(t, &w)| (t.name().to_string(), w))
                .collect();
            self.header(&outputs)?;
        }
        let k = self.keep.len();
        for (r, &row) in batch.rows.iter().enumerate() {
            self.cells.clear();
            self.cells.push(row.to_string());
            self.cells
                .extend(batch.kept[r * k..(r + 1) * k].iter().map(Kept::text));
            for (t, &w) in batch.outputs.iter().zip(batch.widths) {
                for i in r * w..(r + 1) * w {
                    let v = serde_json::to_value(Scalar(t.data(), i)).map_err(|e| e.to_string())?;
                    self.cells.push(cell(v));
                }
                let class = self
                    .labels
                    .as_ref()
                    .filter(|l| l.output == t.name() && w == 1)
                    .map(|l| l.class_of(t.data(), r).unwrap_or_default().to_string());
                if let Some(class) = class {
                    self.cells.push(class);
                }
            }
            self.out
                .write_record(&self.cells)
                .map_err(|e| format!("cannot write CSV: {e}"))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.out
            .flush()
            .map_err(|e| format!("cannot write CSV: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

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
        let mut out = Vec::new();
        let mut writer = JsonLinesWriter::new(&mut out, "-", Some(labels), &["id".to_string()]);
        let outputs = [label, probs];
        let batch = ScoredBatch {
            rows: &[6, 7],
            kept: &[Kept::Str("a\"1".into()), Kept::Int(7)],
            outputs: &outputs,
            widths: &[1, 2],
        };
        writer.write_batch(&batch).unwrap();
        writer.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"row\":6,\"id\":\"a\\\"1\",\"label\":0,\"class\":\"setosa\",\"probabilities\":[0.75,0.25]}\n\
             {\"row\":7,\"id\":7,\"label\":2,\"class\":\"virginica\",\"probabilities\":[0.5,0.5]}\n"
        );
    }
}

//! Writing scored rows: one JSON line per row, `{"row": N, "<output>": ...}`,
//! with `"class"` after a classifier's label when the card names the classes.
//!
//! A format is a [`RowWriter`]; the values are written by the protocol's
//! one JSON writer of tensor data (`protocol::json_data`), so a row reads as
//! the same numbers an HTTP response would carry.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use super::layout::LabelClasses;
use crate::protocol::json_data::{FlatData, Scalar};
use crate::tensor::Tensor;

/// The model's outputs for one batch of rows.
pub struct ScoredBatch<'a> {
    /// The index of each row among the input's data rows.
    pub rows: &'a [u64],
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
    line: Vec<u8>,
}

impl<W: Write> JsonLinesWriter<W> {
    pub fn new(out: W, path: &str, labels: Option<LabelClasses>) -> Self {
        JsonLinesWriter {
            out,
            path: path.to_string(),
            labels,
            line: Vec::with_capacity(256),
        }
    }
}

impl<W: Write> RowWriter for JsonLinesWriter<W> {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> Result<(), String> {
        for (r, &row) in batch.rows.iter().enumerate() {
            self.line.clear();
            write_row(&mut self.line, row, r, batch, self.labels.as_ref())
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

/// Writes row `r` of the batch (row `row` of the input) as one JSON line.
fn write_row(
    line: &mut Vec<u8>,
    row: u64,
    r: usize,
    batch: &ScoredBatch<'_>,
    labels: Option<&LabelClasses>,
) -> serde_json::Result<()> {
    write!(line, "{{\"row\":{row}").expect("writing to a Vec");
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
        let mut writer = JsonLinesWriter::new(&mut out, "-", Some(labels));
        let outputs = [label, probs];
        let batch = ScoredBatch {
            rows: &[6, 7],
            outputs: &outputs,
            widths: &[1, 2],
        };
        writer.write_batch(&batch).unwrap();
        writer.finish().unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"row\":6,\"label\":0,\"class\":\"setosa\",\"probabilities\":[0.75,0.25]}\n\
             {\"row\":7,\"label\":2,\"class\":\"virginica\",\"probabilities\":[0.5,0.5]}\n"
        );
    }
}

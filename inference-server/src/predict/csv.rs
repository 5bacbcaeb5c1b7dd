//! CSV rows: comma-separated numbers, with or without a header line.

use std::io::Read;

use super::layout::Layout;
use super::read::{RowReader, RowSink, Stop};

/// Reads CSV from `R`.
pub struct CsvReader<R> {
    input: R,
}

impl<R: Read + Send> CsvReader<R> {
    pub fn new(input: R) -> Self {
        CsvReader { input }
    }
}

impl<R: Read + Send> RowReader for CsvReader<R> {
    fn read_rows(self: Box<Self>, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop> {
        read_csv(self.input, layout, sink)
    }
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

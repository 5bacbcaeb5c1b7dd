//! CSV rows: comma-separated numbers, with or without a header line, quoted
//! as RFC 4180 says (a quoted field may hold commas, quotes and newlines).
//!
//! A shard reads its file from the first byte with the `csv` crate and
//! skips the records that start before its slice, so the record boundaries
//! it sees are the ones a reader of the whole file sees: a newline inside
//! quotes is never taken for the end of a row, whatever the split point.
//! Reading stops at the first record that starts at or after the slice's
//! end; the record that straddles the end is read whole by the shard it
//! starts in.

use std::io::Read;

use super::layout::Layout;
use super::read::{Kept, RowReader, RowSink, Stop};

/// Reads CSV from `R` (positioned at the file's first byte).
pub struct CsvReader<R> {
    input: R,
    start: u64,
    end: u64,
}

impl<R: Read + Send> CsvReader<R> {
    pub fn new(input: R, start: u64, end: u64) -> Self {
        CsvReader { input, start, end }
    }
}

impl<R: Read + Send> RowReader for CsvReader<R> {
    fn read_rows(self: Box<Self>, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop> {
        read_csv(self.input, self.start, self.end, layout, sink)
    }
}

fn parse_cell(cell: &[u8]) -> Option<f64> {
    std::str::from_utf8(cell).ok()?.trim().parse::<f64>().ok()
}

/// Which columns hold the features and the kept values.
struct Columns {
    /// Feature j -> column index (`None`: column j).
    features: Option<Vec<usize>>,
    keep: Vec<usize>,
    /// Cells a row must have.
    len: usize,
}

/// Reads the header `names`: a header that names every feature of the model
/// card picks the columns by name (in any order, extra columns ignored);
/// otherwise the columns that are not kept are the features, in order.
fn header_columns(
    names: &[String],
    layout: &Layout,
    keep: &[String],
    file: &str,
    line: u64,
) -> Result<Columns, Stop> {
    let keep_idx = keep
        .iter()
        .map(|k| {
            names.iter().position(|n| n == k).ok_or_else(|| {
                Stop::Invalid(format!(
                    "{file}: --keep-columns {k:?} is not a column of the header (line {line}: {})",
                    names.join(",")
                ))
            })
        })
        .collect::<Result<Vec<usize>, Stop>>()?;
    let by_name: Option<Vec<usize>> = if layout.features.is_empty() {
        None
    } else {
        layout
            .features
            .iter()
            .map(|f| names.iter().position(|n| n == f))
            .collect()
    };
    if let Some(idx) = by_name {
        return Ok(Columns {
            features: Some(idx),
            keep: keep_idx,
            len: names.len(),
        });
    }
    let rest: Vec<usize> = (0..names.len()).filter(|i| !keep_idx.contains(i)).collect();
    if rest.len() == layout.width {
        return Ok(Columns {
            features: Some(rest),
            keep: keep_idx,
            len: names.len(),
        });
    }
    let want = if layout.features.is_empty() {
        String::new()
    } else {
        format!(" (or columns named {})", layout.features.join(", "))
    };
    Err(Stop::Invalid(format!(
        "{file}: line {line}: the header has {} columns but the model takes {} features{want}",
        names.len(),
        layout.width
    )))
}

/// Reads CSV: a first line with a cell that is not a number is a header.
/// Only records starting in `start..end` are scored; every data record is
/// counted from the file's start, so a row's index is its index in the file.
/// Returns whether a header was read.
fn read_csv(
    input: impl Read,
    start: u64,
    end: u64,
    layout: &Layout,
    sink: &mut RowSink,
) -> Result<bool, Stop> {
    let file = sink.file_name().to_string();
    let keep = sink.keep.clone();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut columns = Columns {
        features: None,
        keep: Vec::new(),
        len: layout.width,
    };
    let mut header = false;
    let mut first = true;
    let mut row = 0u64;
    let mut values = Vec::with_capacity(layout.width);
    let mut kept = Vec::with_capacity(keep.len());
    loop {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Stop::Fatal(format!("{file}: line {line}: cannot read CSV: {e}"))
        })?;
        if !more {
            break;
        }
        let (pos, line) = record.position().map_or((0, 0), |p| (p.byte(), p.line()));
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if std::mem::take(&mut first) {
            if record.iter().any(|c| parse_cell(c).is_none()) {
                header = true;
                let names: Vec<String> = record
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).trim().to_string())
                    .collect();
                columns = header_columns(&names, layout, &keep, &file, line)?;
                continue;
            }
            if !keep.is_empty() {
                return Err(Stop::Invalid(format!(
                    "{file}: --keep-columns names columns, but the file has no header line"
                )));
            }
        }
        if pos >= end {
            break;
        }
        let this = row;
        row += 1;
        if pos < start {
            if this.is_multiple_of(65_536) && sink.cancelled() {
                return Err(Stop::Cancelled);
            }
            continue;
        }
        if record.len() != columns.len {
            sink.bad(
                Some(line),
                this,
                &format!("expected {} values, got {}", columns.len, record.len()),
            )?;
            continue;
        }
        values.clear();
        let mut problem = None;
        for j in 0..layout.width {
            let col = columns.features.as_ref().map_or(j, |c| c[j]);
            let cell = &record[col];
            match parse_cell(cell) {
                Some(x) => match layout.check(x) {
                    Ok(()) => values.push(x),
                    Err(why) => {
                        problem = Some(format!("column {}: {why}", col + 1));
                        break;
                    }
                },
                None => {
                    problem = Some(format!(
                        "column {}: {:?} is not a number",
                        col + 1,
                        String::from_utf8_lossy(cell)
                    ));
                    break;
                }
            }
        }
        match problem {
            Some(why) => sink.bad(Some(line), this, &why)?,
            None => {
                kept.extend(
                    columns
                        .keep
                        .iter()
                        .map(|&c| Kept::Str(String::from_utf8_lossy(&record[c]).into_owned())),
                );
                sink.good(this, &values, &mut kept)?;
            }
        }
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::layout::tests::iris_layout;
    use crate::predict::read::Batch;
    use crate::predict::shard::tests::Rng;
    use crate::predict::shard::{Shard, plan};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::sync_channel;

    /// Reads `text[..]`'s rows owned by `start..end`: (row index, kept id).
    fn read_slice(text: &[u8], start: u64, end: u64) -> Vec<(u64, String)> {
        let layout = iris_layout();
        let (tx, rx) = sync_channel(64);
        let keep: Arc<[String]> = vec!["id".to_string()].into();
        let mut sink = RowSink::new(
            &layout,
            keep,
            7,
            tx,
            true,
            indicatif::ProgressBar::hidden(),
            Arc::new(AtomicBool::new(false)),
        );
        sink.start_file("t.csv");
        read_csv(text, start, end, &layout, &mut sink).unwrap();
        sink.finish().unwrap();
        rx.try_iter()
            .flat_map(|b: Batch| {
                b.rows
                    .into_iter()
                    .zip(b.kept.into_iter().map(|k| k.text()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A CSV whose `id` column is quoted and holds commas, doubled quotes and
    /// newlines (`\n` and `\r\n`) in every other row.
    fn tricky_csv(rng: &mut Rng, rows: usize) -> (Vec<u8>, Vec<String>) {
        let mut text = b"id,a,b,c,d\n".to_vec();
        let mut ids = Vec::new();
        for i in 0..rows {
            let id = match rng.below(5) {
                0 => format!("r{i}"),
                1 => format!("r{i}\nsecond line, with a comma"),
                2 => format!("r{i} \"quoted\"\r\n\n"),
                3 => format!("\n\nr{i}\n"),
                _ => format!("r{i},x"),
            };
            let quoted = format!("\"{}\"", id.replace('"', "\"\""));
            let line = format!("{quoted},{}.1,3.5,1.4,0.2\n", i % 9);
            text.extend_from_slice(line.as_bytes());
            // Cells are trimmed (`csv::Trim::All`), quoted ones too.
            ids.push(id.trim().to_string());
        }
        (text, ids)
    }

    #[test]
    fn shards_of_a_csv_with_quoted_newlines_read_every_row_once_in_order() {
        let mut rng = Rng(42);
        for _ in 0..12 {
            let rows = 1 + rng.below(25) as usize;
            let (text, ids) = tricky_csv(&mut rng, rows);
            let whole = read_slice(&text, 0, u64::MAX);
            assert_eq!(
                whole.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
                ids
            );
            // Every split point: two shards cut at each byte.
            for cut in 0..=text.len() as u64 {
                let mut both = read_slice(&text, 0, cut);
                both.extend(read_slice(&text, cut, u64::MAX));
                assert_eq!(both, whole, "cut at byte {cut}");
            }
            // And N shards of the plan, for several N.
            for count in 1..12 {
                let mut all = Vec::new();
                for index in 0..count {
                    for s in plan(&[text.len() as u64], Shard { index, count }) {
                        all.extend(read_slice(&text, s.start, s.end));
                    }
                }
                assert_eq!(all, whole, "{count} shards");
            }
        }
    }

    #[test]
    fn keep_columns_need_a_header() {
        let layout = iris_layout();
        let (tx, _rx) = sync_channel(10);
        let mut sink = RowSink::new(
            &layout,
            vec!["id".to_string()].into(),
            7,
            tx,
            false,
            indicatif::ProgressBar::hidden(),
            Arc::new(AtomicBool::new(false)),
        );
        let err = read_csv(&b"1,2,3,4\n"[..], 0, u64::MAX, &layout, &mut sink).unwrap_err();
        assert!(matches!(err, Stop::Invalid(m) if m.contains("no header line")));
        let err = read_csv(
            &b"x,a,b,c,d\n1,1,2,3,4\n"[..],
            0,
            u64::MAX,
            &layout,
            &mut sink,
        )
        .unwrap_err();
        assert!(matches!(err, Stop::Invalid(m) if m.contains("\"id\" is not a column")));
    }
}

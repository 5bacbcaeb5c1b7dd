//! Property tests of the row decoders of `predict`: CSV (`predict::csv`, RFC 4180 quoting) and
//! JSON Lines (`predict::jsonl`), through `predict::read::reader_for` as a shard reads a file.
//!
//! Two kinds of property, as for the request decoders (`prop_protocol.rs`): any bytes give rows,
//! skipped rows or a clear stop (a header that does not fit, a bad row under `--bad-rows fail`),
//! never a panic; and rows written by a real writer (the `csv` crate's, serde_json's) decode to
//! the same values and kept ids, in order, and written again from what was decoded, decode to
//! them again. `PROPTEST_CASES` sets the number of cases (256 by default here).

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::sync_channel;

use modelship_server::model::ModelCard;
use modelship_server::predict::layout::Layout;
use modelship_server::predict::read::{
    Batch, InputFormat, Piece, PieceData, RowSink, Stop, reader_for,
};
use modelship_server::tensor::{DataType, TensorSpec};
use proptest::prelude::*;

const FEATURES: [&str; 4] = ["a", "b", "c", "d"];

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn layout() -> Layout {
    let card = ModelCard {
        feature_names: FEATURES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let spec = TensorSpec {
        name: "input".into(),
        datatype: DataType::Fp32,
        shape: vec![-1, 4],
    };
    Layout::new(&[spec], &card).unwrap()
}

/// What a shard read: every good row as (row index, values, kept id), the skipped count,
/// or the stop.
type Read = Result<(Vec<(u64, Vec<f64>, String)>, u64), Stop>;

fn read(bytes: &[u8], format: InputFormat, fail_on_bad_rows: bool) -> Read {
    let layout = layout();
    let (tx, rx) = sync_channel(1 << 16);
    let keep: Arc<[String]> = vec!["id".to_string()].into();
    let mut sink = RowSink::new(
        &layout,
        keep,
        5,
        tx,
        fail_on_bad_rows,
        indicatif::ProgressBar::hidden(),
        Arc::new(AtomicBool::new(false)),
    );
    sink.start_file("rows");
    let piece = Piece {
        name: "rows".into(),
        format,
        data: PieceData::Stream(Box::new(Cursor::new(bytes.to_vec()))),
        start: 0,
        end: u64::MAX,
    };
    reader_for(piece)?.read_rows(&layout, &mut sink)?;
    let (skipped, _) = sink.finish()?;
    let rows = rx
        .try_iter()
        .flat_map(|b: Batch| {
            let width = 4;
            b.rows
                .iter()
                .enumerate()
                .map(|(i, &row)| {
                    (
                        row,
                        b.values[i * width..(i + 1) * width].to_vec(),
                        b.kept[i].text(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok((rows, skipped))
}

/// A stop any input may cause: not a panic, not an I/O failure.
fn acceptable(stop: &Stop) -> bool {
    matches!(stop, Stop::Invalid(_) | Stop::BadRow(_))
}

/// Values that survive f32 (the input's datatype) and text: finite, in f32's range.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-1000i32..1000).prop_map(f64::from),
        (-1.0e6f32..1.0e6f32).prop_map(f64::from),
        Just(0.0),
    ]
}

/// Ids that need quoting in CSV: commas, quotes, newlines, spaces, unicode.
fn id() -> impl Strategy<Value = String> {
    "[a-z0-9 ,\"\\n\\r\u{e9}]{0,12}".prop_map(|s| s.to_string())
}

fn rows() -> impl Strategy<Value = Vec<(String, [f64; 4])>> {
    proptest::collection::vec((id(), [value(), value(), value(), value()]), 0..40)
}

fn write_csv(rows: &[(String, Vec<f64>)]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "a", "b", "c", "d"]).unwrap();
    for (id, v) in rows {
        let mut record = vec![id.clone()];
        record.extend(v.iter().map(|x| x.to_string()));
        w.write_record(&record).unwrap();
    }
    w.into_inner().unwrap()
}

fn write_jsonl(rows: &[(String, Vec<f64>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, v) in rows {
        let mut object = serde_json::Map::new();
        object.insert("id".into(), id.clone().into());
        for (name, x) in FEATURES.iter().zip(v) {
            object.insert(name.to_string(), (*x).into());
        }
        out.extend(serde_json::to_vec(&object).unwrap());
        out.push(b'\n');
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_give_rows_or_a_clear_stop(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        jsonl in any::<bool>(),
        fail in any::<bool>(),
    ) {
        let format = if jsonl { InputFormat::Jsonl } else { InputFormat::Csv };
        if let Err(stop) = read(&bytes, format, fail) {
            prop_assert!(acceptable(&stop), "{stop:?}");
        }
    }

    #[test]
    fn almost_right_csv_gives_rows_or_a_clear_stop(
        good in rows(),
        noise in proptest::collection::vec((0usize..2000, "[,\"\\n\\rx\\-e.9]{1,3}"), 0..6),
        fail in any::<bool>(),
    ) {
        let rows: Vec<_> = good.into_iter().map(|(id, v)| (id, v.to_vec())).collect();
        let mut text = write_csv(&rows);
        for (at, junk) in noise {
            let at = at % (text.len() + 1);
            text.splice(at..at, junk.bytes());
        }
        if let Err(stop) = read(&text, InputFormat::Csv, fail) {
            prop_assert!(acceptable(&stop), "{stop:?}");
        }
    }

    #[test]
    fn csv_rows_decode_to_what_was_written_and_again(good in rows()) {
        let rows: Vec<_> = good.into_iter().map(|(id, v)| (id, v.to_vec())).collect();
        let (read1, skipped) = read(&write_csv(&rows), InputFormat::Csv, true)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(skipped, 0);
        let decoded: Vec<_> = read1.iter().map(|(_, v, id)| (id.clone(), v.clone())).collect();
        // Cells are trimmed of ASCII whitespace, quoted ones too (docs/batch.md).
        let trimmed: Vec<_> = rows
            .iter()
            .map(|(id, v)| (id.trim_matches(|c: char| c.is_ascii_whitespace()).to_string(), v.clone()))
            .collect();
        prop_assert_eq!(&decoded, &trimmed);
        let indexes: Vec<u64> = read1.iter().map(|(i, _, _)| *i).collect();
        prop_assert_eq!(indexes, (0..rows.len() as u64).collect::<Vec<_>>());
        let (read2, _) = read(&write_csv(&decoded), InputFormat::Csv, true)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(read2, read1);
    }

    #[test]
    fn jsonl_rows_decode_to_what_was_written_and_again(good in rows()) {
        let rows: Vec<_> = good.into_iter().map(|(id, v)| (id, v.to_vec())).collect();
        let (read1, skipped) = read(&write_jsonl(&rows), InputFormat::Jsonl, true)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(skipped, 0);
        let decoded: Vec<_> = read1.iter().map(|(_, v, id)| (id.clone(), v.clone())).collect();
        prop_assert_eq!(&decoded, &rows);
        let (read2, _) = read(&write_jsonl(&decoded), InputFormat::Jsonl, true)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(read2, read1);
    }
}

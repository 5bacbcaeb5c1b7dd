//! JSON Lines rows: each line an array of the features, an object keyed by
//! feature name, or an object with the input's name holding the array.
//!
//! A newline never occurs inside a JSON value (JSON escapes it in strings),
//! so every newline ends a row. A shard still reads its file from the first
//! byte, counting lines without parsing them, so that line numbers and row
//! indexes are the file's own.

use std::io::BufRead;

use serde_json::Value;

use super::layout::Layout;
use super::read::{Kept, RowReader, RowSink, Stop};

/// Reads JSON Lines from `R` (positioned at the file's first byte).
pub struct JsonlReader<R> {
    input: R,
    start: u64,
    end: u64,
}

impl<R: BufRead + Send> JsonlReader<R> {
    pub fn new(input: R, start: u64, end: u64) -> Self {
        JsonlReader { input, start, end }
    }
}

impl<R: BufRead + Send> RowReader for JsonlReader<R> {
    fn read_rows(self: Box<Self>, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop> {
        read_jsonl(self.input, self.start, self.end, layout, sink)
    }
}

/// Reads JSON Lines: each line an array of the features' values, an object
/// keyed by feature name, or an object with the input's name holding the
/// array. Blank lines are ignored. Only lines starting in `start..end` are
/// scored.
fn read_jsonl(
    mut input: impl BufRead,
    start: u64,
    end: u64,
    layout: &Layout,
    sink: &mut RowSink,
) -> Result<bool, Stop> {
    let keep = sink.keep.clone();
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut offset = 0u64;
    let mut row = 0u64;
    let mut values = Vec::with_capacity(layout.width);
    let mut kept = Vec::with_capacity(keep.len());
    loop {
        line.clear();
        let pos = offset;
        let n = input.read_until(b'\n', &mut line).map_err(|e| {
            Stop::Fatal(format!(
                "{}: line {}: cannot read: {e}",
                sink.file_name(),
                number + 1
            ))
        })?;
        if n == 0 || pos >= end {
            break;
        }
        offset += n as u64;
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let this = row;
        row += 1;
        if pos < start {
            if this.is_multiple_of(65_536) && sink.cancelled() {
                return Err(Stop::Cancelled);
            }
            continue;
        }
        values.clear();
        let parsed = std::str::from_utf8(&line)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(|text| {
                serde_json::from_str::<Value>(text).map_err(|e| format!("invalid JSON: {e}"))
            });
        match parsed.and_then(|value| json_row(&value, layout, &mut values).map(|()| value)) {
            Ok(value) => {
                kept.extend(keep.iter().map(|k| kept_value(value.get(k.as_str()))));
                sink.good(this, &values, &mut kept)?;
            }
            Err(why) => sink.bad(Some(number), this, &why)?,
        }
    }
    Ok(false)
}

/// A kept JSON value: missing or null is null; arrays and objects keep their text.
fn kept_value(value: Option<&Value>) -> Kept {
    match value {
        None | Some(Value::Null) => Kept::Null,
        Some(Value::Bool(b)) => Kept::Bool(*b),
        Some(Value::Number(n)) => n
            .as_i64()
            .map_or_else(|| Kept::Float(n.as_f64().unwrap_or(f64::NAN)), Kept::Int),
        Some(Value::String(s)) => Kept::Str(s.clone()),
        Some(other) => Kept::Json(other.to_string()),
    }
}

fn json_row(value: &Value, layout: &Layout, values: &mut Vec<f64>) -> Result<(), String> {
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
    match value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::layout::tests::iris_layout;

    #[test]
    fn json_rows_are_arrays_or_objects() {
        let layout = iris_layout();
        let mut v = Vec::new();
        let row = |line: &str, v: &mut Vec<f64>| match serde_json::from_str::<Value>(line) {
            Ok(value) => json_row(&value, &layout, v),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
        row("[1,2,3,4]", &mut v).unwrap();
        row(r#"{"input":[1,2,3,4]}"#, &mut v).unwrap();
        row(r#"{"d":4,"c":3,"b":2,"a":1,"id":"x"}"#, &mut v).unwrap();
        assert_eq!(v, [1.0, 2.0, 3.0, 4.0].repeat(3));
        let bad = [
            ("[1,2,3]", "expected 4 values, got 3"),
            (r#"{"a":1,"b":2,"c":3}"#, "missing feature 'd'"),
            (r#"[1,2,"x",4]"#, "value 3: \"x\" is not a number"),
            ("[1,2,3,", "invalid JSON"),
            ("7", "expected an array or an object"),
        ];
        for (line, want) in bad {
            let err = row(line, &mut v).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}

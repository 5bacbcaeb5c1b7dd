//! JSON Lines rows: each line an array of the features, an object keyed by
//! feature name, or an object with the input's name holding the array.

use std::io::BufRead;

use serde_json::Value;

use super::layout::Layout;
use super::read::{RowReader, RowSink, Stop};

/// Reads JSON Lines from `R`.
pub struct JsonlReader<R> {
    input: R,
}

impl<R: BufRead + Send> JsonlReader<R> {
    pub fn new(input: R) -> Self {
        JsonlReader { input }
    }
}

impl<R: BufRead + Send> RowReader for JsonlReader<R> {
    fn read_rows(self: Box<Self>, layout: &Layout, sink: &mut RowSink) -> Result<bool, Stop> {
        read_jsonl(self.input, layout, sink)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::layout::tests::iris_layout;

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
}

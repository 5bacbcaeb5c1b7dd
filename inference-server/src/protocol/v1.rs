//! The v1 (TensorFlow Serving style) protocol that KServe also speaks:
//! `{"instances": [...]}` in, `{"predictions": [...]}` out.
//!
//! Each instance is one row of the model's single input. For a model with
//! several inputs, each instance is an object keyed by input name.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::BadRequest;
use super::json_data;
use crate::tensor::{Tensor, TensorSpec};

#[derive(Deserialize)]
struct PredictWire<'a> {
    #[serde(borrow)]
    instances: Vec<&'a RawValue>,
}

/// Turns a v1 `instances` body into one tensor per model input, in signature order.
pub fn parse_instances(body: &[u8], inputs: &[TensorSpec]) -> Result<Vec<Tensor>, BadRequest> {
    let wire: PredictWire = serde_json::from_slice(body)
        .map_err(|e| BadRequest::new(format!("invalid JSON body: {e}")))?;
    if wire.instances.is_empty() {
        return Err(BadRequest::new(
            "instances: at least one instance is required",
        ));
    }
    let rows = wire.instances.len();
    if let [spec] = inputs {
        let tensor = stack_rows(spec, wire.instances.iter().copied(), rows)?;
        return Ok(vec![tensor]);
    }
    let objects = wire
        .instances
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            serde_json::from_str::<Map<String, Value>>(raw.get()).map_err(|_| {
                BadRequest::new(format!(
                    "instances[{i}]: the model has {} inputs, so each instance must be an object keyed by input name",
                    inputs.len()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    inputs
        .iter()
        .map(|spec| {
            let raws = objects
                .iter()
                .enumerate()
                .map(|(i, obj)| {
                    let v = obj.get(&spec.name).ok_or_else(|| {
                        BadRequest::new(format!("instances[{i}]: missing input '{}'", spec.name))
                    })?;
                    RawValue::from_string(v.to_string())
                        .map_err(|e| BadRequest::new(format!("instances[{i}]: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            stack_rows(spec, raws.iter().map(|r| &**r), rows)
        })
        .collect()
}

fn stack_rows<'a>(
    spec: &TensorSpec,
    instances: impl Iterator<Item = &'a RawValue>,
    rows: usize,
) -> Result<Tensor, BadRequest> {
    let row_shape: Vec<usize> = spec
        .shape
        .iter()
        .skip(1)
        .map(|&d| d.max(1) as usize)
        .collect();
    if spec.shape.iter().skip(1).any(|&d| d < 0) {
        return Err(BadRequest::new(format!(
            "input '{}': v1 instances need fixed dimensions after the batch dimension (shape {:?}); use the v2 protocol",
            spec.name, spec.shape
        )));
    }
    let per_row: usize = row_shape.iter().product();
    let mut parts = Vec::with_capacity(rows);
    for (i, raw) in instances.enumerate() {
        let row = json_data::parse(spec.datatype, raw).map_err(|e| {
            BadRequest::new(format!(
                "instances[{i}]: not valid {} data: {e}",
                spec.datatype
            ))
        })?;
        if row.len() != per_row {
            return Err(BadRequest::new(format!(
                "instances[{i}]: input '{}' needs {per_row} values per instance, got {}",
                spec.name,
                row.len()
            )));
        }
        let part = Tensor::new(String::new(), vec![1, per_row], row)
            .map_err(|e| BadRequest::new(e.to_string()))?;
        parts.push(part);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    let stacked =
        Tensor::concat_rows(&spec.name, &refs).map_err(|e| BadRequest::new(e.to_string()))?;
    let mut shape = vec![rows];
    shape.extend(row_shape);
    Tensor::new(spec.name.clone(), shape, stacked.into_data())
        .map_err(|e| BadRequest::new(e.to_string()))
}

/// Encodes outputs as v1 predictions: one entry per row; the row's values
/// for a single-output model, an object keyed by output name otherwise.
pub fn encode_predictions(outputs: &[Tensor]) -> Result<Value, BadRequest> {
    let rows = outputs
        .first()
        .and_then(|t| t.shape().first().copied())
        .unwrap_or(0);
    let per_output: Vec<Vec<Value>> = outputs.iter().map(|t| row_values(t, rows)).collect();
    let predictions: Vec<Value> = (0..rows)
        .map(|r| {
            if let [only] = per_output.as_slice() {
                only[r].clone()
            } else {
                Value::Object(
                    outputs
                        .iter()
                        .zip(&per_output)
                        .map(|(t, vals)| (t.name().to_string(), vals[r].clone()))
                        .collect(),
                )
            }
        })
        .collect();
    Ok(serde_json::json!({ "predictions": predictions }))
}

/// Splits a tensor into per-row JSON values: a scalar for `[N]`, an array for `[N, ...]`.
fn row_values(t: &Tensor, rows: usize) -> Vec<Value> {
    let all = serde_json::to_value(json_data::FlatData::new(t.data())).unwrap_or(Value::Null);
    let Value::Array(items) = all else {
        return vec![Value::Null; rows];
    };
    if rows == 0 {
        return Vec::new();
    }
    let per_row = items.len() / rows;
    if t.shape().len() <= 1 {
        return items;
    }
    items
        .chunks(per_row.max(1))
        .map(|c| Value::Array(c.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DataType, TensorData};

    fn iris_input() -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 4],
        }]
    }

    #[test]
    fn instances_become_rows_of_the_single_input() {
        let body = br#"{"instances": [[5.1,3.5,1.4,0.2],[6.9,3.1,5.4,2.1]]}"#;
        let t = parse_instances(body, &iris_input()).unwrap();
        assert_eq!(t[0].shape(), [2, 4]);
        assert_eq!(t[0].data().len(), 8);
    }

    #[test]
    fn wrong_row_length_names_the_instance() {
        let body = br#"{"instances": [[5.1,3.5,1.4,0.2],[6.9,3.1]]}"#;
        let err = parse_instances(body, &iris_input()).unwrap_err();
        assert!(err.0.contains("instances[1]"), "{err}");
        let err = parse_instances(br#"{"instances": []}"#, &iris_input()).unwrap_err();
        assert!(err.0.contains("at least one"), "{err}");
    }

    #[test]
    fn predictions_are_per_row_objects_for_several_outputs() {
        let label = Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2])).unwrap();
        let probs = Tensor::new(
            "p",
            vec![2, 2],
            TensorData::Fp32(vec![0.5, 0.5, 0.25, 0.75]),
        )
        .unwrap();
        let v = encode_predictions(&[label.clone(), probs]).unwrap();
        assert_eq!(v["predictions"][1]["label"], 2);
        assert_eq!(v["predictions"][1]["p"], serde_json::json!([0.25, 0.75]));
        let v = encode_predictions(&[label]).unwrap();
        assert_eq!(v["predictions"], serde_json::json!([0, 2]));
    }
}

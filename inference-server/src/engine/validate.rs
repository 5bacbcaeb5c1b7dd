//! What a request must satisfy before it is queued: every input of the
//! signature exactly once with the right datatype and shape, one row count,
//! and only outputs the model has.

use crate::protocol::BadRequest;
use crate::tensor::{ModelSignature, Tensor};

/// Validates request tensors against a signature; returns them in signature
/// order with the row count.
pub fn prepare_inputs(
    signature: &ModelSignature,
    mut inputs: Vec<Tensor>,
) -> Result<(Vec<Tensor>, usize), BadRequest> {
    for t in &inputs {
        if !signature.inputs.iter().any(|s| s.name == t.name()) {
            let names: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(BadRequest::new(format!(
                "input '{}': the model has no such input (inputs: {})",
                t.name(),
                names.join(", ")
            )));
        }
    }
    let mut ordered = Vec::with_capacity(signature.inputs.len());
    for spec in &signature.inputs {
        let pos = inputs
            .iter()
            .position(|t| t.name() == spec.name)
            .ok_or_else(|| BadRequest::new(format!("input '{}': missing", spec.name)))?;
        let t = inputs.swap_remove(pos);
        if inputs.iter().any(|o| o.name() == spec.name) {
            return Err(BadRequest::new(format!(
                "input '{}': given more than once",
                spec.name
            )));
        }
        if t.datatype() != spec.datatype {
            return Err(BadRequest::new(format!(
                "input '{}': expected datatype {}, got {}",
                spec.name,
                spec.datatype,
                t.datatype()
            )));
        }
        if !spec.accepts_shape(t.shape()) {
            return Err(BadRequest::new(format!(
                "input '{}': shape {:?} does not match the model's {:?} (-1 = any size)",
                spec.name,
                t.shape(),
                spec.shape
            )));
        }
        ordered.push(t);
    }
    let rows = ordered[0].shape().first().copied().unwrap_or(1);
    if signature.supports_batching() {
        if rows == 0 {
            return Err(BadRequest::new(format!(
                "input '{}': the batch is empty (first dimension is 0)",
                ordered[0].name()
            )));
        }
        if let Some(t) = ordered.iter().find(|t| t.shape()[0] != rows) {
            return Err(BadRequest::new(format!(
                "input '{}': has {} rows but input '{}' has {rows}",
                t.name(),
                t.shape()[0],
                ordered[0].name()
            )));
        }
    }
    if let Some(t) = ordered.iter().find(|t| t.data().is_empty()) {
        return Err(BadRequest::new(format!(
            "input '{}': has no values",
            t.name()
        )));
    }
    Ok((ordered, rows))
}

/// Checks that every output a request asks for exists in the signature.
pub fn check_outputs<'a>(
    signature: &ModelSignature,
    requested: impl IntoIterator<Item = &'a str>,
) -> Result<(), BadRequest> {
    for name in requested {
        if !signature.outputs.iter().any(|s| s.name == name) {
            let names: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
            return Err(BadRequest::new(format!(
                "outputs: the model has no output '{name}' (outputs: {})",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// One row of zeros (or `false`, or empty strings) for every input, dynamic
/// dimensions 1: the warm-up request.
pub fn warm_up_inputs(signature: &ModelSignature) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            Tensor::zeros(spec.name.clone(), spec.datatype, shape)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DataType, TensorData, TensorSpec};

    fn signature() -> ModelSignature {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 2],
        };
        ModelSignature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        }
    }

    fn x(shape: Vec<usize>, data: impl Into<TensorData>) -> Vec<Tensor> {
        vec![Tensor::new("x", shape, data).unwrap()]
    }

    #[test]
    fn prepare_checks_names_datatypes_shapes_and_rows() {
        let sig = signature();
        let bad_name = vec![Tensor::new("z", vec![1, 2], vec![0.0f32; 2]).unwrap()];
        let cases: [(Vec<Tensor>, &str); 5] = [
            (bad_name, "input 'z': the model has no such input"),
            (
                x(vec![1, 2], vec![0i64; 2]),
                "expected datatype FP32, got INT64",
            ),
            (x(vec![1, 3], vec![0.0f32; 3]), "shape [1, 3]"),
            (x(vec![0, 2], Vec::<f32>::new()), "batch is empty"),
            (vec![], "input 'x': missing"),
        ];
        for (inputs, want) in cases {
            let err = prepare_inputs(&sig, inputs).unwrap_err();
            assert!(err.0.contains(want), "{err} does not say {want}");
        }
        let (ok, rows) = prepare_inputs(&sig, x(vec![3, 2], vec![1.0f32; 6])).unwrap();
        assert_eq!((ok.len(), rows), (1, 3));
    }

    #[test]
    fn unknown_outputs_are_named_with_the_ones_there_are() {
        let sig = signature();
        assert!(check_outputs(&sig, ["y"]).is_ok());
        let err = check_outputs(&sig, ["y", "z"]).unwrap_err();
        assert_eq!(err.0, "outputs: the model has no output 'z' (outputs: y)");
    }

    #[test]
    fn warm_up_inputs_are_one_row_of_zeros() {
        let mut sig = signature();
        sig.inputs.push(TensorSpec {
            name: "s".into(),
            datatype: DataType::Bytes,
            shape: vec![-1],
        });
        let inputs = warm_up_inputs(&sig);
        assert_eq!(inputs[0].shape(), [1, 2]);
        assert_eq!(inputs[0].data(), &TensorData::Fp32(vec![0.0; 2]));
        assert_eq!(inputs[1].data(), &TensorData::Bytes(vec![Vec::new()]));
        assert!(prepare_inputs(&sig, inputs).is_ok());
    }
}

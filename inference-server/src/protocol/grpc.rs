//! Open Inference Protocol v2 over gRPC: the messages of
//! `proto/grpc_predict_v2.proto` ([`pb`], generated at build time) ↔ tensors.
//!
//! Requests carry each input either typed, in `contents` (the field the
//! datatype uses, see [`Contents`]), or raw, in `raw_input_contents` (the
//! binary tensor data layout of [`super::binary`]); FP16 has no typed field
//! and is raw only. Responses are always raw, in `raw_output_contents`, as
//! Triton answers and `tritonclient.grpc` reads: one encoding for every
//! datatype, and no per-element conversion. Request and tensor `parameters`
//! are ignored. Errors are [`BadRequest`]s that name the field.

use super::BadRequest;
use super::binary;
use super::v2::{InferRequest, ModelMetadata, RequestedOutput, TensorMetadata};
use crate::tensor::{DataType, Element, Tensor, TensorData, f16};

/// The generated messages and service of `inference.GRPCInferenceService`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

/// The encoded descriptor set of the proto file, for the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/grpc_predict_v2_descriptor.bin"));

use pb::InferTensorContents;

/// Where an element type travels in [`InferTensorContents`]: the protocol
/// puts INT8/16/32 in `int_contents`, UINT8/16/32 in `uint_contents`.
pub trait Contents: Element {
    /// The field's name, for messages.
    const FIELD: &'static str;
    /// Takes the elements out of their field, converting them to this type.
    fn take(contents: &mut InferTensorContents) -> Result<Vec<Self>, String>;
    /// Puts elements into their field (typed contents; used by clients and tests).
    fn put(elements: Vec<Self>, contents: &mut InferTensorContents);
}

/// Implements [`Contents`] for types stored in a field of their own type.
macro_rules! same_type {
    ($($t:ty => $field:ident),* $(,)?) => {$(
        impl Contents for $t {
            const FIELD: &'static str = stringify!($field);
            fn take(contents: &mut InferTensorContents) -> Result<Vec<Self>, String> {
                Ok(std::mem::take(&mut contents.$field))
            }
            fn put(elements: Vec<Self>, contents: &mut InferTensorContents) {
                contents.$field = elements;
            }
        }
    )*};
}

/// Implements [`Contents`] for narrow integers stored in a wider field.
macro_rules! narrowed {
    ($($t:ty => $field:ident),* $(,)?) => {$(
        impl Contents for $t {
            const FIELD: &'static str = stringify!($field);
            fn take(contents: &mut InferTensorContents) -> Result<Vec<Self>, String> {
                std::mem::take(&mut contents.$field)
                    .into_iter()
                    .map(|x| {
                        <$t>::try_from(x).map_err(|_| {
                            format!("{} value {x} is out of range for {}", stringify!($field), <$t as Element>::DATATYPE)
                        })
                    })
                    .collect()
            }
            fn put(elements: Vec<Self>, contents: &mut InferTensorContents) {
                contents.$field = elements.into_iter().map(Into::into).collect();
            }
        }
    )*};
}

same_type!(
    bool => bool_contents,
    i32 => int_contents,
    i64 => int64_contents,
    u32 => uint_contents,
    u64 => uint64_contents,
    f32 => fp32_contents,
    f64 => fp64_contents,
    Vec<u8> => bytes_contents,
);
narrowed!(i8 => int_contents, i16 => int_contents, u8 => uint_contents, u16 => uint_contents);

impl Contents for f16 {
    const FIELD: &'static str = "raw_input_contents";
    fn take(_: &mut InferTensorContents) -> Result<Vec<Self>, String> {
        Err("FP16 has no typed contents; send it in raw_input_contents".into())
    }
    fn put(_: Vec<Self>, _: &mut InferTensorContents) {}
}

/// The names of the typed fields that hold elements.
fn fields_set(c: &InferTensorContents) -> Vec<&'static str> {
    let counts = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ];
    counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, _)| f)
        .collect()
}

/// The typed elements of one input: from the datatype's field, and no other.
fn typed_data(
    datatype: DataType,
    mut contents: InferTensorContents,
) -> Result<(TensorData, &'static str), String> {
    let field = crate::match_datatype!(datatype, T => <T as Contents>::FIELD);
    if let Some(other) = fields_set(&contents).into_iter().find(|f| *f != field) {
        return Err(format!(
            "datatype {datatype} takes its values in contents.{field}, not contents.{other}"
        ));
    }
    let data = crate::match_datatype!(datatype, T => T::take(&mut contents)?.into());
    Ok((data, field))
}

/// Typed contents holding `data` (FP16 cannot be typed and stays empty).
pub fn typed_contents(data: TensorData) -> InferTensorContents {
    let mut contents = InferTensorContents::default();
    crate::match_data!(data, v => Contents::put(v, &mut contents));
    contents
}

/// Decodes a `ModelInferRequest` into tensors (not yet checked against any
/// model). Outputs are all raw, so every requested output is `binary`.
pub fn parse_request(req: pb::ModelInferRequest) -> Result<InferRequest, BadRequest> {
    if req.inputs.is_empty() {
        return Err(BadRequest::new("inputs: at least one input is required"));
    }
    let raw = !req.raw_input_contents.is_empty();
    if raw && req.raw_input_contents.len() != req.inputs.len() {
        return Err(BadRequest::new(format!(
            "raw_input_contents: has {} entries but there are {} inputs (one each, in order)",
            req.raw_input_contents.len(),
            req.inputs.len()
        )));
    }
    let mut raw_contents = req.raw_input_contents.into_iter();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.into_iter().enumerate() {
        let name = input.name;
        let bad = |msg: String| BadRequest::new(format!("input '{name}': {msg}"));
        let datatype = DataType::parse(&input.datatype)
            .ok_or_else(|| bad(format!("unknown datatype {:?}", input.datatype)))?;
        let shape = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| bad(format!("shape {:?} has a negative dimension", input.shape)))?;
        let contents = input.contents.unwrap_or_default();
        let (data, field) = match raw_contents.next() {
            Some(bytes) => {
                if let Some(f) = fields_set(&contents).first() {
                    return Err(bad(format!(
                        "contents.{f} is set but the request uses raw_input_contents (one or the other)"
                    )));
                }
                let data = binary::decode(datatype, &bytes)
                    .map_err(|e| bad(format!("raw_input_contents[{i}]: {e}")))?;
                (data, "raw_input_contents")
            }
            None => typed_data(datatype, contents).map_err(bad)?,
        };
        let expected = crate::tensor::element_count(&shape).ok_or_else(|| {
            bad(format!(
                "shape {shape:?} has more elements than can be addressed"
            ))
        })?;
        if data.len() != expected {
            return Err(bad(format!(
                "shape {shape:?} needs {expected} values but {field} has {}",
                data.len()
            )));
        }
        inputs.push(Tensor::new(name, shape, data).map_err(|e| BadRequest::new(e.to_string()))?);
    }
    let outputs = req
        .outputs
        .into_iter()
        .map(|o| RequestedOutput {
            name: o.name,
            binary: true,
        })
        .collect();
    Ok(InferRequest {
        id: (!req.id.is_empty()).then_some(req.id),
        inputs,
        outputs,
        binary_output: true,
    })
}

/// Encodes the response: each output's name, datatype and shape, and its
/// elements in `raw_output_contents`, in the same order.
pub fn encode_response(
    model_name: &str,
    model_version: Option<&str>,
    id: String,
    outputs: &[&Tensor],
) -> pb::ModelInferResponse {
    pb::ModelInferResponse {
        model_name: model_name.to_string(),
        model_version: model_version.unwrap_or_default().to_string(),
        id,
        parameters: Default::default(),
        outputs: outputs
            .iter()
            .map(|t| pb::model_infer_response::InferOutputTensor {
                name: t.name().to_string(),
                datatype: t.datatype().as_str().to_string(),
                shape: t.shape().iter().map(|&d| d as i64).collect(),
                parameters: Default::default(),
                contents: None,
            })
            .collect(),
        raw_output_contents: outputs.iter().map(|t| binary::encode(t.data())).collect(),
    }
}

/// The tensors of a response, decoded from `raw_output_contents` (what a
/// client does; the tests use it).
pub fn decode_response(resp: &pb::ModelInferResponse) -> Result<Vec<Tensor>, BadRequest> {
    resp.outputs
        .iter()
        .zip(&resp.raw_output_contents)
        .map(|(o, bytes)| {
            let datatype = DataType::parse(&o.datatype)
                .ok_or_else(|| BadRequest::new(format!("output '{}': datatype", o.name)))?;
            let data = binary::decode(datatype, bytes)
                .map_err(|e| BadRequest::new(format!("output '{}': {e}", o.name)))?;
            let shape = o.shape.iter().map(|&d| d as usize).collect();
            Tensor::new(o.name.clone(), shape, data).map_err(|e| BadRequest::new(e.to_string()))
        })
        .collect()
}

fn tensor_metadata(t: TensorMetadata) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
    }
}

impl From<ModelMetadata> for pb::ModelMetadataResponse {
    fn from(m: ModelMetadata) -> Self {
        pb::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: m.inputs.into_iter().map(tensor_metadata).collect(),
            outputs: m.outputs.into_iter().map(tensor_metadata).collect(),
        }
    }
}

#[cfg(test)]
mod tests;

//! Open Inference Protocol v2 over REST: inference requests and responses,
//! in JSON and with the binary tensor data extension.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::BadRequest;
use super::binary;
use super::json_data::{self, FlatData};
use crate::tensor::{DataType, Tensor, TensorSpec, element_count};

/// HTTP header that carries the length of the JSON part of a request or
/// response body when binary tensor data follows it.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct RequestWire<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(borrow)]
    inputs: Vec<InputWire<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutputWire>>,
}

#[derive(Deserialize)]
struct InputWire<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RequestedOutputWire {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// An output the client asked for, and whether it wants it as binary data.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: bool,
}

/// A parsed inference request: tensors with concrete shapes, not yet
/// checked against any model.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Outputs to return, in order; empty means all of them.
    pub outputs: Vec<RequestedOutput>,
    /// `parameters.binary_data_output`: default for outputs not listed.
    pub binary_output: bool,
}

fn param_bool(params: &Option<Map<String, Value>>, key: &str) -> bool {
    params
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Parses a request body. `json_len` is the value of the
/// `Inference-Header-Content-Length` header when present: the body then
/// holds that many bytes of JSON followed by the inputs' binary data.
pub fn parse_request(body: &[u8], json_len: Option<usize>) -> Result<InferRequest, BadRequest> {
    let (json, mut binary) = match json_len {
        Some(n) if n > body.len() => {
            return Err(BadRequest::new(format!(
                "{HEADER_CONTENT_LENGTH} is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let wire: RequestWire = serde_json::from_slice(json)
        .map_err(|e| BadRequest::new(format!("invalid JSON body: {e}")))?;
    if wire.inputs.is_empty() {
        return Err(BadRequest::new("inputs: at least one input is required"));
    }
    let mut inputs = Vec::with_capacity(wire.inputs.len());
    for input in wire.inputs {
        let name = input.name;
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            BadRequest::new(format!(
                "input '{name}': unknown datatype {:?}",
                input.datatype
            ))
        })?;
        let shape = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                BadRequest::new(format!(
                    "input '{name}': shape {:?} has a negative dimension",
                    input.shape
                ))
            })?;
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"));
        let data = match (binary_size, input.data) {
            (Some(size), _) => {
                let size = size.as_u64().ok_or_else(|| {
                    BadRequest::new(format!(
                        "input '{name}': parameters.binary_data_size must be a non-negative integer"
                    ))
                })? as usize;
                if size > binary.len() {
                    return Err(BadRequest::new(format!(
                        "input '{name}': binary_data_size {size} exceeds the {} bytes of binary data left",
                        binary.len()
                    )));
                }
                let (chunk, rest) = binary.split_at(size);
                binary = rest;
                binary::decode(datatype, chunk)
                    .map_err(|e| BadRequest::new(format!("input '{name}': {e}")))?
            }
            (None, Some(raw)) => json_data::parse(datatype, raw).map_err(|e| {
                BadRequest::new(format!("input '{name}': data is not valid {datatype}: {e}"))
            })?,
            (None, None) => {
                return Err(BadRequest::new(format!(
                    "input '{name}': has neither data nor parameters.binary_data_size"
                )));
            }
        };
        let expected = element_count(&shape).ok_or_else(|| {
            BadRequest::new(format!(
                "input '{name}': shape {shape:?} has more elements than can be addressed"
            ))
        })?;
        if data.len() != expected {
            return Err(BadRequest::new(format!(
                "input '{name}': shape {shape:?} needs {expected} values but data has {}",
                data.len()
            )));
        }
        let tensor = Tensor::new(name, shape, data).map_err(|e| BadRequest::new(e.to_string()))?;
        inputs.push(tensor);
    }
    if !binary.is_empty() {
        return Err(BadRequest::new(format!(
            "{} bytes of binary data are not claimed by any input's binary_data_size",
            binary.len()
        )));
    }
    let binary_output = param_bool(&wire.parameters, "binary_data_output");
    let outputs = wire
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| RequestedOutput {
            binary: if o
                .parameters
                .as_ref()
                .is_some_and(|p| p.contains_key("binary_data"))
            {
                param_bool(&o.parameters, "binary_data")
            } else {
                binary_output
            },
            name: o.name,
        })
        .collect();
    Ok(InferRequest {
        id: wire.id,
        inputs,
        outputs,
        binary_output,
    })
}

/// One output of a response and how it is to be encoded.
pub struct ResponseOutput<'a> {
    pub tensor: &'a Tensor,
    pub binary: bool,
}

/// The outputs to send, in order, each with its encoding: all of them (in
/// the model's order) when the request names none, else the named ones.
/// The names were checked against the model before it ran.
pub fn select_outputs<'a>(
    outputs: &'a [Tensor],
    requested: &[RequestedOutput],
    binary_output: bool,
) -> Vec<ResponseOutput<'a>> {
    if requested.is_empty() {
        return outputs
            .iter()
            .map(|tensor| ResponseOutput {
                tensor,
                binary: binary_output,
            })
            .collect();
    }
    requested
        .iter()
        .filter_map(|want| {
            let tensor = outputs.iter().find(|t| t.name() == want.name)?;
            Some(ResponseOutput {
                tensor,
                binary: want.binary,
            })
        })
        .collect()
}

#[derive(Serialize)]
struct ResponseWire<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Map<String, Value>>,
    outputs: Vec<OutputWire<'a>>,
}

#[derive(Serialize)]
struct OutputWire<'a> {
    name: &'a str,
    datatype: DataType,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<FlatData<'a>>,
}

#[derive(Serialize)]
struct BinaryParams {
    binary_data_size: usize,
}

/// An encoded response body, with the JSON length when binary data follows.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub json_len: Option<usize>,
}

/// Encodes an inference response. Outputs marked binary are appended after
/// the JSON in order, as the binary tensor data extension specifies.
pub fn encode_response(
    model_name: &str,
    model_version: Option<&str>,
    id: &str,
    outputs: &[ResponseOutput<'_>],
) -> EncodedResponse {
    encode_response_with(model_name, model_version, id, None, outputs)
}

/// [`encode_response`] with the response's `parameters` (the server's
/// inference id, `modelship_inference_id`).
pub fn encode_response_with(
    model_name: &str,
    model_version: Option<&str>,
    id: &str,
    parameters: Option<Map<String, Value>>,
    outputs: &[ResponseOutput<'_>],
) -> EncodedResponse {
    let mut binaries = Vec::new();
    let wire = ResponseWire {
        model_name,
        model_version,
        id,
        parameters,
        outputs: outputs
            .iter()
            .map(|o| {
                let (parameters, data) = if o.binary {
                    let bytes = binary::encode(o.tensor.data());
                    let params = BinaryParams {
                        binary_data_size: bytes.len(),
                    };
                    binaries.push(bytes);
                    (Some(params), None)
                } else {
                    (None, Some(FlatData::new(o.tensor.data())))
                };
                OutputWire {
                    name: o.tensor.name(),
                    datatype: o.tensor.datatype(),
                    shape: o.tensor.shape(),
                    parameters,
                    data,
                }
            })
            .collect(),
    };
    let mut body = serde_json::to_vec(&wire).expect("response serializes");
    if binaries.is_empty() {
        return EncodedResponse {
            body,
            json_len: None,
        };
    }
    let json_len = body.len();
    for b in binaries {
        body.extend_from_slice(&b);
    }
    EncodedResponse {
        body,
        json_len: Some(json_len),
    }
}

/// Metadata of one tensor as `GET /v2/models/{name}` reports it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

impl From<&TensorSpec> for TensorMetadata {
    fn from(spec: &TensorSpec) -> Self {
        TensorMetadata {
            name: spec.name.clone(),
            datatype: spec.datatype.as_str().to_string(),
            shape: spec.shape.clone(),
        }
    }
}

/// `GET /v2/models/{name}[/versions/{version}]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// `GET /v2`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, utoipa::ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    const IRIS: &str = r#"{"id":"r1","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[6.9,3.1,5.4,2.1]]}]}"#;

    #[test]
    fn parses_a_json_request() {
        let req = parse_request(IRIS.as_bytes(), None).unwrap();
        assert_eq!(req.id.as_deref(), Some("r1"));
        assert_eq!(req.inputs.len(), 1);
        assert_eq!(req.inputs[0].shape(), [2, 4]);
        assert_eq!(req.inputs[0].data().len(), 8);
        assert!(req.outputs.is_empty());
        assert!(!req.binary_output);
    }

    #[test]
    fn errors_name_the_offending_input() {
        let cases = [
            (
                r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3]}]}"#,
                "input 'x': shape [1, 4] needs 4 values but data has 3",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#,
                "input 'x': unknown datatype",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
                "input 'x': shape [-1] has a negative dimension",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}"#,
                "input 'x': data is not valid INT32",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#,
                "input 'x': has neither data",
            ),
            (r#"{"inputs":[]}"#, "inputs: at least one input"),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[NaN]}]}"#,
                "invalid JSON body",
            ),
            (r#"{"inputs": [ "#, "invalid JSON body"),
        ];
        for (body, want) in cases {
            let err = parse_request(body.as_bytes(), None).unwrap_err();
            assert!(err.0.contains(want), "{body}: got {err}");
        }
    }

    #[test]
    fn binary_inputs_are_read_in_order() {
        let header = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"b","shape":[1],"datatype":"INT64","parameters":{"binary_data_size":8}}],"parameters":{"binary_data_output":true}}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend(1.5f32.to_le_bytes());
        body.extend(2.5f32.to_le_bytes());
        body.extend(7i64.to_le_bytes());
        let req = parse_request(&body, Some(header.len())).unwrap();
        assert_eq!(req.inputs[0].data(), &TensorData::Fp32(vec![1.5, 2.5]));
        assert_eq!(req.inputs[1].data(), &TensorData::Int64(vec![7]));
        assert!(req.binary_output);

        let err = parse_request(&body[..body.len() - 1], Some(header.len())).unwrap_err();
        assert!(err.0.contains("input 'b'"), "{err}");
        let mut extra = body.clone();
        extra.push(0);
        assert!(parse_request(&extra, Some(header.len())).is_err());
        assert!(parse_request(&body, Some(body.len() + 1)).is_err());
    }

    #[test]
    fn output_binary_flag_overrides_the_request_default() {
        let body = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"parameters":{"binary_data_output":true},"outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":false}}]}"#;
        let req = parse_request(body.as_bytes(), None).unwrap();
        assert_eq!(
            req.outputs,
            vec![
                RequestedOutput {
                    name: "a".into(),
                    binary: true
                },
                RequestedOutput {
                    name: "b".into(),
                    binary: false
                },
            ]
        );
    }

    #[test]
    fn requested_outputs_come_in_the_order_asked_for() {
        let a = Tensor::new("a", vec![1], TensorData::Fp32(vec![1.0])).unwrap();
        let b = Tensor::new("b", vec![1], TensorData::Fp32(vec![2.0])).unwrap();
        let outputs = [a, b];
        let all = select_outputs(&outputs, &[], true);
        let names: Vec<(&str, bool)> = all.iter().map(|o| (o.tensor.name(), o.binary)).collect();
        assert_eq!(names, [("a", true), ("b", true)]);
        let asked = [RequestedOutput {
            name: "b".into(),
            binary: false,
        }];
        let some = select_outputs(&outputs, &asked, true);
        let names: Vec<(&str, bool)> = some.iter().map(|o| (o.tensor.name(), o.binary)).collect();
        assert_eq!(names, [("b", false)]);
    }

    #[test]
    fn encodes_json_and_binary_outputs() {
        let label = Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2])).unwrap();
        let probs = Tensor::new(
            "probabilities",
            vec![2, 1],
            TensorData::Fp32(vec![0.5, 0.25]),
        )
        .unwrap();
        let enc = encode_response(
            "iris",
            None,
            "r1",
            &[
                ResponseOutput {
                    tensor: &label,
                    binary: false,
                },
                ResponseOutput {
                    tensor: &probs,
                    binary: true,
                },
            ],
        );
        let json_len = enc.json_len.unwrap();
        let json: Value = serde_json::from_slice(&enc.body[..json_len]).unwrap();
        assert_eq!(json["model_name"], "iris");
        assert_eq!(json["id"], "r1");
        assert_eq!(json["outputs"][0]["data"], serde_json::json!([0, 2]));
        assert_eq!(json["outputs"][1]["parameters"]["binary_data_size"], 8);
        assert!(json["outputs"][1].get("data").is_none());
        assert_eq!(&enc.body[json_len..json_len + 4], &0.5f32.to_le_bytes());
    }
}

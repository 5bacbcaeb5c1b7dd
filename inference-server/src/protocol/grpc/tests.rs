use super::pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::*;

fn samples() -> Vec<TensorData> {
    vec![
        TensorData::Bool(vec![true, false]),
        TensorData::Uint8(vec![0, 255]),
        TensorData::Uint16(vec![1, 65535]),
        TensorData::Uint32(vec![1, u32::MAX]),
        TensorData::Uint64(vec![1, u64::MAX]),
        TensorData::Int8(vec![-128, 127]),
        TensorData::Int16(vec![-1, 300]),
        TensorData::Int32(vec![-1, i32::MAX]),
        TensorData::Int64(vec![-1, i64::MIN]),
        TensorData::Fp16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
        TensorData::Fp32(vec![1.5, -2.25]),
        TensorData::Fp64(vec![1e300, -0.5]),
        TensorData::Bytes(vec![b"ab".to_vec(), vec![]]),
    ]
}

fn input(
    datatype: &str,
    shape: Vec<i64>,
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: "x".into(),
        datatype: datatype.into(),
        shape,
        parameters: Default::default(),
        contents,
    }
}

fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: "m".into(),
        inputs,
        raw_input_contents: raw,
        ..Default::default()
    }
}

fn error(req: pb::ModelInferRequest) -> String {
    parse_request(req).unwrap_err().0
}

#[test]
fn every_datatype_round_trips_raw_and_every_typed_one_typed() {
    let samples = samples();
    assert_eq!(samples.len(), DataType::ALL.len());
    for data in samples {
        let dt = data.datatype().as_str();
        let raw = request(vec![input(dt, vec![2], None)], vec![binary::encode(&data)]);
        let parsed = parse_request(raw).unwrap();
        assert_eq!(*parsed.inputs[0].data(), data, "{dt} raw");
        assert_eq!(parsed.inputs[0].shape(), [2]);
        if data.datatype() != DataType::Fp16 {
            let typed = request(
                vec![input(dt, vec![1, 2], Some(typed_contents(data.clone())))],
                vec![],
            );
            let parsed = parse_request(typed).unwrap();
            assert_eq!(*parsed.inputs[0].data(), data, "{dt} typed");
        }
        let tensor = Tensor::new("y", vec![2, 1], data.clone()).unwrap();
        let resp = encode_response("m", Some("3"), "id-1".into(), &[&tensor]);
        assert_eq!(
            (resp.id.as_str(), resp.model_version.as_str()),
            ("id-1", "3")
        );
        assert_eq!(resp.outputs[0].shape, [2, 1]);
        assert_eq!(
            decode_response(&resp).unwrap(),
            vec![tensor],
            "{dt} response"
        );
    }
}

#[test]
fn id_and_outputs_are_kept_and_parameters_ignored() {
    let mut req = request(
        vec![input(
            "FP32",
            vec![1, 1],
            Some(typed_contents(vec![1.0f32].into())),
        )],
        vec![],
    );
    req.id = "abc".into();
    req.parameters
        .insert("whatever".into(), pb::InferParameter::default());
    req.outputs = vec![InferRequestedOutputTensor {
        name: "label".into(),
        parameters: Default::default(),
    }];
    let parsed = parse_request(req).unwrap();
    assert_eq!(parsed.id.as_deref(), Some("abc"));
    assert_eq!(
        parsed.outputs,
        [RequestedOutput {
            name: "label".into(),
            binary: true
        }]
    );
    let no_id = request(
        vec![input(
            "FP32",
            vec![1],
            Some(typed_contents(vec![1.0f32].into())),
        )],
        vec![],
    );
    assert_eq!(parse_request(no_id).unwrap().id, None);
}

#[test]
fn bad_requests_name_the_field() {
    let fp32 = |v: Vec<f32>| Some(typed_contents(v.into()));
    let cases = [
        (request(vec![], vec![]), "inputs: at least one input"),
        (
            request(vec![input("FLOAT32", vec![1], fp32(vec![1.0]))], vec![]),
            "input 'x': unknown datatype \"FLOAT32\"",
        ),
        (
            request(vec![input("FP32", vec![-1, 4], fp32(vec![1.0]))], vec![]),
            "input 'x': shape [-1, 4] has a negative dimension",
        ),
        (
            request(vec![input("FP32", vec![1, 4], fp32(vec![1.0; 5]))], vec![]),
            "input 'x': shape [1, 4] needs 4 values but fp32_contents has 5",
        ),
        (
            request(vec![input("INT64", vec![1], fp32(vec![1.0]))], vec![]),
            "input 'x': datatype INT64 takes its values in contents.int64_contents, not contents.fp32_contents",
        ),
        (
            request(vec![input("FP16", vec![1], None)], vec![]),
            "input 'x': FP16 has no typed contents",
        ),
        (
            request(
                vec![input(
                    "INT8",
                    vec![1],
                    Some(InferTensorContents {
                        int_contents: vec![300],
                        ..Default::default()
                    }),
                )],
                vec![],
            ),
            "input 'x': int_contents value 300 is out of range for INT8",
        ),
        (
            request(
                vec![input("FP32", vec![1], fp32(vec![1.0]))],
                vec![vec![0; 4]],
            ),
            "input 'x': contents.fp32_contents is set but the request uses raw_input_contents",
        ),
        (
            request(vec![input("FP32", vec![1], None)], vec![vec![0; 3]]),
            "input 'x': raw_input_contents[0]: 3 bytes is not a whole number of FP32 elements",
        ),
        (
            request(vec![input("FP32", vec![1, 4], None)], vec![vec![0; 4]]),
            "input 'x': shape [1, 4] needs 4 values but raw_input_contents has 1",
        ),
        (
            request(
                vec![input("FP32", vec![1], None), input("FP32", vec![1], None)],
                vec![vec![0; 4]],
            ),
            "raw_input_contents: has 1 entries but there are 2 inputs",
        ),
    ];
    for (req, want) in cases {
        let got = error(req);
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }
}

#[test]
fn model_metadata_keeps_every_field() {
    let m = ModelMetadata {
        name: "iris".into(),
        versions: vec!["1".into()],
        platform: "onnx".into(),
        inputs: vec![TensorMetadata {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 4],
        }],
        outputs: vec![],
    };
    let pb: pb::ModelMetadataResponse = m.into();
    assert_eq!(
        (
            pb.name.as_str(),
            pb.versions.as_slice(),
            pb.platform.as_str()
        ),
        ("iris", &["1".to_string()][..], "onnx")
    );
    assert_eq!(pb.inputs[0].shape, [-1, 4]);
}

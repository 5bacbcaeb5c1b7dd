//! Property tests of the protocol decoders: v2 JSON (`protocol::v2::parse_request`,
//! `protocol::json_data`), the binary tensor data extension (`protocol::binary`) and v1
//! instances (`protocol::v1::parse_instances`).
//!
//! Two kinds of property: any input gives a value or a `BadRequest`, never a panic (raw
//! bytes, and JSON built to look almost right: huge and negative shapes, wrong datatypes,
//! sizes that do not add up); and a request built from tensors decodes to those tensors,
//! whatever mix of JSON (flat or nested) and binary data carries them, and re-encoded
//! decodes to them again. `PROPTEST_CASES` sets the number of cases (256 by default here).

use modelship_server::protocol::binary;
use modelship_server::protocol::json_data::{self, FlatData};
use modelship_server::protocol::v1::parse_instances;
use modelship_server::protocol::v2::parse_request;
use modelship_server::tensor::{DataType, Tensor, TensorData, TensorSpec, f16};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // A failure is shrunk and reported; no file of past failures in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn datatype() -> impl Strategy<Value = DataType> {
    proptest::sample::select(DataType::ALL.to_vec())
}

/// `len` elements of `dt`; finite floats (JSON has no NaN), UTF-8 BYTES when `utf8`.
fn data(dt: DataType, len: usize, utf8: bool) -> BoxedStrategy<TensorData> {
    use proptest::collection::vec;
    macro_rules! of {
        ($s:expr) => {
            vec($s, len).prop_map(TensorData::from).boxed()
        };
    }
    match dt {
        DataType::Bool => of!(any::<bool>()),
        DataType::Uint8 => of!(any::<u8>()),
        DataType::Uint16 => of!(any::<u16>()),
        DataType::Uint32 => of!(any::<u32>()),
        DataType::Uint64 => of!(any::<u64>()),
        DataType::Int8 => of!(any::<i8>()),
        DataType::Int16 => of!(any::<i16>()),
        DataType::Int32 => of!(any::<i32>()),
        DataType::Int64 => of!(any::<i64>()),
        DataType::Fp16 => of!((-65504.0f32..65504.0).prop_map(f16::from_f32)),
        DataType::Fp32 => of!(prop_oneof![
            any::<f32>().prop_filter("finite", |x| x.is_finite()),
            Just(0.0f32),
            Just(-0.0f32),
        ]),
        DataType::Fp64 => of!(any::<f64>().prop_filter("finite", |x| x.is_finite())),
        DataType::Bytes if utf8 => of!(".{0,8}".prop_map(String::into_bytes)),
        DataType::Bytes => of!(proptest::collection::vec(any::<u8>(), 0..8)),
    }
}

/// A tensor of up to 3 dimensions of up to 4 (so up to 64 elements), possibly empty.
fn tensor(utf8: bool) -> impl Strategy<Value = Tensor> {
    (
        "[a-z][a-z0-9_]{0,6}",
        datatype(),
        proptest::collection::vec(0usize..=4, 0..=3),
    )
        .prop_flat_map(move |(name, dt, shape)| {
            let len = shape.iter().product();
            data(dt, len, utf8)
                .prop_map(move |d| Tensor::new(name.clone(), shape.clone(), d).unwrap())
        })
}

/// How one input travels: flat JSON, JSON nested as its shape, or binary data.
#[derive(Debug, Clone, Copy)]
enum Carry {
    Flat,
    Nested,
    Binary,
}

fn nest(flat: &[Value], shape: &[usize]) -> Value {
    match shape {
        [] => flat.first().cloned().unwrap_or(Value::Null),
        [_] => Value::Array(flat.to_vec()),
        [_, inner @ ..] => {
            let step: usize = inner.iter().product();
            if step == 0 {
                // Rows of nothing: as many empty rows as the first dimension says.
                return Value::Array(vec![Value::Array(vec![]); shape[0]]);
            }
            Value::Array(flat.chunks(step).map(|c| nest(c, inner)).collect())
        }
    }
}

/// A v2 request body carrying `inputs` as `carry` says, and its JSON length when binary
/// data follows (the `Inference-Header-Content-Length` value).
fn encode_request(inputs: &[(Tensor, Carry)]) -> (Vec<u8>, Option<usize>) {
    let mut blob = Vec::new();
    let wire: Vec<Value> = inputs
        .iter()
        .map(|(t, carry)| {
            let mut input = json!({
                "name": t.name(),
                "shape": t.shape(),
                "datatype": t.datatype().as_str(),
            });
            let flat = serde_json::to_value(FlatData::new(t.data())).unwrap();
            match carry {
                Carry::Flat => input["data"] = flat,
                Carry::Nested => {
                    let Value::Array(items) = flat else {
                        unreachable!()
                    };
                    input["data"] = nest(&items, t.shape());
                }
                Carry::Binary => {
                    let bytes = binary::encode(t.data());
                    input["parameters"] = json!({ "binary_data_size": bytes.len() });
                    blob.extend(bytes);
                }
            }
            input
        })
        .collect();
    let mut body = serde_json::to_vec(&json!({ "id": "p", "inputs": wire })).unwrap();
    if blob.is_empty() {
        return (body, None);
    }
    let json_len = body.len();
    body.extend(blob);
    (body, Some(json_len))
}

fn carry() -> impl Strategy<Value = Carry> {
    prop_oneof![Just(Carry::Flat), Just(Carry::Nested), Just(Carry::Binary)]
}

/// JSON that looks like a request but is wrong in any of many ways.
fn almost_a_request() -> impl Strategy<Value = Value> {
    let dim = prop_oneof![
        6 => 0i64..5,
        1 => Just(-1i64),
        2 => Just(i64::MAX),
        2 => Just(1i64 << 32),
        1 => Just(i64::MIN),
    ];
    let datatype_name = prop_oneof![
        datatype().prop_map(|d| d.as_str().to_string()),
        Just("FP128".to_string()),
        Just(String::new()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        ".{0,4}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(inner, 0..3).prop_map(|v| json!({ "x": v })),
        ]
    });
    let input = (
        ".{0,3}",
        proptest::collection::vec(dim, 0..4),
        datatype_name,
        proptest::option::of(value),
        proptest::option::of(prop_oneof![
            (0u64..64).prop_map(Value::from),
            Just(json!(-1)),
            Just(json!("8")),
        ]),
    )
        .prop_map(|(name, shape, datatype, data, size)| {
            let mut input = json!({ "name": name, "shape": shape, "datatype": datatype });
            if let Some(data) = data {
                input["data"] = data;
            }
            if let Some(size) = size {
                input["parameters"] = json!({ "binary_data_size": size });
            }
            input
        });
    (
        proptest::collection::vec(input, 0..4),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(inputs, binary_output)| {
            let mut request = json!({ "inputs": inputs });
            if let Some(b) = binary_output {
                request["parameters"] = json!({ "binary_data_output": b });
                request["outputs"] = json!([{ "name": "y", "parameters": { "binary_data": b } }]);
            }
            request
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn v2_raw_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        json_len in proptest::option::of(0usize..300),
    ) {
        let _ = parse_request(&body, json_len);
    }

    #[test]
    fn v2_almost_requests_decode_or_are_refused(
        request in almost_a_request(),
        blob in proptest::collection::vec(any::<u8>(), 0..64),
        with_blob in any::<bool>(),
    ) {
        let mut body = serde_json::to_vec(&request).unwrap();
        let json_len = body.len();
        if with_blob {
            body.extend(&blob);
        }
        match parse_request(&body, with_blob.then_some(json_len)) {
            // What decodes is consistent: every tensor's data fills its shape.
            Ok(parsed) => {
                for t in &parsed.inputs {
                    prop_assert_eq!(t.shape().iter().product::<usize>(), t.data().len());
                }
            }
            Err(e) => prop_assert!(!e.0.is_empty()),
        }
    }

    #[test]
    fn v2_requests_decode_to_their_tensors_and_re_encode_the_same(
        inputs in proptest::collection::vec((tensor(true), carry()), 1..4),
    ) {
        let (body, json_len) = encode_request(&inputs);
        let parsed = parse_request(&body, json_len)
            .map_err(|e| TestCaseError::fail(format!("{}: {}", e.0, String::from_utf8_lossy(&body))))?;
        let want: Vec<Tensor> = inputs.iter().map(|(t, _)| t.clone()).collect();
        prop_assert_eq!(&parsed.inputs, &want);
        // Decoded, then encoded again (all binary, then all JSON): the same tensors.
        for carry in [Carry::Binary, Carry::Flat] {
            let again: Vec<(Tensor, Carry)> = parsed.inputs.iter().map(|t| (t.clone(), carry)).collect();
            let (body, json_len) = encode_request(&again);
            let reparsed = parse_request(&body, json_len).map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!(&reparsed.inputs, &want);
        }
    }

    #[test]
    fn binary_bytes_decode_and_re_encode_to_the_same_bytes_or_are_refused(
        dt in datatype(),
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        match binary::decode(dt, &bytes) {
            Ok(data) => {
                prop_assert_eq!(data.datatype(), dt);
                let again = binary::encode(&data);
                if dt == DataType::Bool {
                    // Any non-zero byte is true, written back as 1.
                    let normalized: Vec<u8> = bytes.iter().map(|&b| u8::from(b != 0)).collect();
                    prop_assert_eq!(again, normalized);
                } else {
                    prop_assert_eq!(again, bytes);
                }
            }
            Err(e) => {
                prop_assert_eq!(e.size, bytes.len());
                prop_assert!(dt == DataType::Bytes || !bytes.len().is_multiple_of(dt.element_size().unwrap()));
            }
        }
    }

    #[test]
    fn binary_round_trips_any_tensor_data(t in tensor(false)) {
        let bytes = binary::encode(t.data());
        prop_assert_eq!(&binary::decode(t.datatype(), &bytes).unwrap(), t.data());
    }

    #[test]
    fn json_data_parses_any_json_or_refuses_it(
        dt in datatype(),
        raw in prop_oneof![
            ".{0,24}",
            r"[\[\]0-9.eE+\-, truefalsn\x22]{0,48}",
        ],
    ) {
        if let Ok(raw) = serde_json::value::RawValue::from_string(raw) {
            let _ = json_data::parse(dt, &raw);
        }
    }

    #[test]
    fn json_data_deep_nesting_is_refused_not_a_stack_overflow(depth in 0usize..5000) {
        let raw = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        if let Ok(raw) = serde_json::value::RawValue::from_string(raw) {
            let parsed = json_data::parse(DataType::Fp32, &raw);
            prop_assert_eq!(parsed.is_ok(), depth <= 32, "depth {}", depth);
        }
    }

    #[test]
    fn v1_raw_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        dims in proptest::collection::vec(prop_oneof![-1i64..5, Just(i64::MAX)], 0..3),
        dt in datatype(),
    ) {
        let spec = TensorSpec { name: "x".into(), datatype: dt, shape: dims };
        let _ = parse_instances(&body, std::slice::from_ref(&spec));
    }

    #[test]
    fn v1_almost_instances_decode_or_are_refused(
        instances in almost_a_request().prop_map(|r| r["inputs"].clone()),
        features in 0i64..5,
        dt in datatype(),
        two_inputs in any::<bool>(),
    ) {
        let body = serde_json::to_vec(&json!({ "instances": instances })).unwrap();
        let x = TensorSpec { name: "x".into(), datatype: dt, shape: vec![-1, features] };
        let y = TensorSpec { name: "y".into(), datatype: dt, shape: vec![-1] };
        let specs = if two_inputs { vec![x, y] } else { vec![x] };
        if let Ok(tensors) = parse_instances(&body, &specs) {
            for t in tensors {
                prop_assert_eq!(t.shape().iter().product::<usize>(), t.data().len());
            }
        }
    }

    #[test]
    fn v1_instances_decode_to_the_rows_they_carry(
        dt in datatype(),
        features in 1usize..5,
        rows in 1usize..6,
        seed in any::<u64>(),
    ) {
        let len = rows * features;
        let mut runner = proptest::test_runner::TestRunner::new_with_rng(
            ProptestConfig::default(),
            proptest::test_runner::TestRng::from_seed(
                proptest::test_runner::RngAlgorithm::ChaCha,
                &{
                    let mut s = [0u8; 32];
                    s[..8].copy_from_slice(&seed.to_le_bytes());
                    s
                },
            ),
        );
        let values = data(dt, len, true).new_tree(&mut runner).unwrap().current();
        let want = Tensor::new("x", vec![rows, features], values).unwrap();
        let Value::Array(flat) = serde_json::to_value(FlatData::new(want.data())).unwrap() else {
            unreachable!()
        };
        let instances: Vec<Value> = flat.chunks(features).map(|r| Value::Array(r.to_vec())).collect();
        let body = serde_json::to_vec(&json!({ "instances": instances })).unwrap();
        let spec = TensorSpec { name: "x".into(), datatype: dt, shape: vec![-1, features as i64] };
        let got = parse_instances(&body, &[spec]).map_err(|e| TestCaseError::fail(e.0))?;
        prop_assert_eq!(got, vec![want]);
    }
}

/// What the properties found first: a shape whose element count overflows `usize`
/// panicked (debug) or wrapped to a small count (release) instead of a 400.
#[test]
fn a_shape_too_large_to_count_is_refused() {
    for shape in [
        "[9223372036854775807, 9223372036854775807]",
        "[4294967296, 4294967296, 0]",
    ] {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"BOOL","parameters":{{"binary_data_size":0}}}}]}}"#
        );
        let err = parse_request(body.as_bytes(), None).unwrap_err();
        assert!(
            err.0.contains("more elements than can be addressed"),
            "{}",
            err.0
        );
    }
}

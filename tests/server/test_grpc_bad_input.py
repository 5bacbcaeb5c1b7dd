"""The gRPC twins of test_bad_input.py: each bad request gets the gRPC status code of its kind and a
message naming the field, and the server keeps serving."""

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as service_pb2_grpc

from conftest import FLOWERS, Server

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as c:
        yield c


@pytest.fixture(scope="module")
def stub(channel):
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def request(name="input", shape=(1, 4), datatype="FP32", field="fp32_contents", values=FLOWERS[0], **over):
    req = pb.ModelInferRequest(model_name=over.pop("model_name", "iris"), **over)
    t = req.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if field:
        getattr(t.contents, field).extend(values)
    return req


def raw(datatype="FP32", shape=(1, 4), chunks=(bytes(16),)):
    req = pb.ModelInferRequest(model_name="iris")
    req.inputs.add(name="input", datatype=datatype, shape=list(shape))
    req.raw_input_contents.extend(chunks)
    return req


def still_serves(stub):
    resp = stub.ModelInfer(request(values=FLOWERS[2]), timeout=10)
    assert resp.raw_output_contents[0] == (2).to_bytes(8, "little")


def with_output(req, name):
    req.outputs.add(name=name)
    return req


def two_inputs():
    req = raw(chunks=(bytes(16),))
    req.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    return req


def mixed():
    req = request()
    req.raw_input_contents.append(bytes(16))
    return req


# (name, request, code, message) — the REST case each one twins is in the name.
CASES = [
    ("wrong shape", request(shape=(1, 5), values=FLOWERS[0] + [1.0]), INVALID, "input 'input': shape [1, 5]"),
    ("wrong datatype", request(datatype="INT64", field="int64_contents", values=[5, 3, 1, 0]), INVALID,
     "input 'input': expected datatype FP32, got INT64"),
    ("unknown datatype", request(datatype="FLOAT32"), INVALID, "input 'input': unknown datatype"),
    ("too many values", request(values=FLOWERS[0] + [9.9]), INVALID,
     "input 'input': shape [1, 4] needs 4 values but fp32_contents has 5"),
    ("too few values", request(values=[1.0]), INVALID, "needs 4 values but fp32_contents has 1"),
    # JSON's NaN and null cases have no protobuf twin (floats may be NaN); values in the wrong field do.
    ("values in the wrong field", request(field="fp64_contents"), INVALID,
     "input 'input': datatype FP32 takes its values in contents.fp32_contents, not contents.fp64_contents"),
    ("empty batch", request(shape=(0, 4), values=[]), INVALID, "input 'input': the batch is empty"),
    ("unknown input", request(name="petals"), INVALID, "input 'petals'"),
    ("no inputs", pb.ModelInferRequest(model_name="iris"), INVALID, "inputs: at least one input"),
    ("negative dim", request(shape=(-1, 4)), INVALID, "negative dimension"),
    ("unknown output", with_output(request(), "nope"), INVALID, "outputs: the model has no output 'nope'"),
    ("no model name", request(model_name=""), INVALID, "model_name: is required"),
    ("raw partial element", raw(chunks=(bytes(15),)), INVALID, "raw_input_contents[0]: 15 bytes is not a whole number"),
    ("raw count", two_inputs(), INVALID, "raw_input_contents: has 1 entries but there are 2 inputs"),
    ("raw and typed", mixed(), INVALID, "contents.fp32_contents is set but the request uses raw_input_contents"),
    ("FP16 typed", request(datatype="FP16", field=None), INVALID, "FP16 has no typed contents"),
    ("unknown model", request(model_name="nope"), NOT_FOUND, "model 'nope'"),
    ("unknown version", request(model_version="7"), NOT_FOUND, "version '7'"),
]


@pytest.mark.parametrize("name,req,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_request(stub, name, req, code, message):
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req, timeout=10)
    assert e.value.code() == code, e.value.details()
    assert message in e.value.details()
    still_serves(stub)


def test_a_message_that_is_not_protobuf(channel, stub):
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        call(b"\xff\xff\xff\xff", timeout=10)
    assert e.value.code() == INVALID, e.value.details()
    assert "not a ModelInferRequest" in e.value.details()
    still_serves(stub)


def test_unknown_model_and_version_in_metadata_and_readiness(stub):
    for call, req in [
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="nope")),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name="iris", version="7")),
        (stub.ModelReady, pb.ModelReadyRequest(name="nope")),
        (stub.ModelReady, pb.ModelReadyRequest(name="iris", version="7")),
    ]:
        with pytest.raises(grpc.RpcError) as e:
            call(req, timeout=10)
        assert e.value.code() == NOT_FOUND, e.value.details()
        assert ("'nope'" in e.value.details()) or ("version '7'" in e.value.details())
    assert stub.ModelReady(pb.ModelReadyRequest(name="iris"), timeout=10).ready
    still_serves(stub)


def test_an_unknown_method_is_unimplemented(channel, stub):
    call = channel.unary_unary("/inference.GRPCInferenceService/RepositoryIndex",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        call(b"", timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    still_serves(stub)


def test_a_message_over_the_limit_is_resource_exhausted():
    s = Server("--model", "builtin://iris", "--runtime", "tract", "--max-body-bytes", "1000")
    try:
        with grpc.insecure_channel(s.grpc_target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            big = request(shape=(100, 4), values=[1.0] * 400)
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(big, timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
            assert "larger than the limit of 1000 bytes" in e.value.details()
            still_serves(stub)
    finally:
        assert s.alive()
        s.stop()

"""The v2 protocol over gRPC: Triton's and KServe's gRPC clients, typed and raw contents, every
datatype, health and reflection, and the same answers as REST."""

import asyncio
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
import requests
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from onnx import TensorProto, helper

from conftest import FLOWERS, LABELS, SERVER_BIN, Server, free_port
from test_lifecycle import SlowModelHandler

FLOWERS_NP = np.array(FLOWERS, dtype=np.float32)
TRITON = Path(__file__).with_name("triton_grpc_client.py")


def triton(check, target):
    """What tritonclient.grpc sees (in its own process: see triton_grpc_client.py)."""
    done = subprocess.run([sys.executable, str(TRITON), check, target], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def test_triton_client_health_metadata_and_infer_match_rest(server):
    seen = triton("iris", server.grpc_target)
    assert (seen["live"], seen["ready"], seen["model_ready"]) == (True, True, True)
    assert seen["server"]["name"] == "modelship" and seen["server"]["version"]
    assert seen["model"] == {
        "name": "iris",
        "platform": "tract",
        "inputs": [["input", "FP32", [-1, 4]]],
        "outputs": [["label", "INT64", [-1]], ["probabilities", "FP32", [-1, 3]]],
    }
    assert seen["id"] == "triton-1"
    assert seen["label"] == LABELS
    assert seen["each"] == [{"outputs": ["label"], "label": [label]} for label in LABELS]
    assert seen["bad"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "input 'input': shape [1, 5]" in seen["bad"]["message"]
    rest = requests.post(
        f"{server.url}/v2/models/iris/infer",
        json={"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": FLOWERS}]},
    ).json()
    by_name = {o["name"]: o for o in rest["outputs"]}
    assert seen["label"] == by_name["label"]["data"]
    np.testing.assert_allclose(np.ravel(seen["probabilities"]), by_name["probabilities"]["data"], rtol=1e-6)


def test_typed_contents_through_the_stub(stub):
    req = pb.ModelInferRequest(model_name="iris", id="typed-1")
    tensor = req.inputs.add(name="input", datatype="FP32", shape=[3, 4])
    tensor.contents.fp32_contents.extend(FLOWERS_NP.ravel().tolist())
    req.parameters["unknown_parameter"].string_param = "ignored"
    resp = stub.ModelInfer(req)
    assert resp.id == "typed-1" and resp.model_name == "iris"
    assert [o.name for o in resp.outputs] == ["label", "probabilities"]
    assert len(resp.raw_output_contents) == 2, "answers are raw"
    assert np.frombuffer(resp.raw_output_contents[0], dtype="<i8").tolist() == LABELS
    assert list(resp.outputs[1].shape) == [3, 3]


def test_a_request_without_id_gets_the_request_id(stub):
    req = pb.ModelInferRequest(model_name="iris")
    tensor = req.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend(FLOWERS[0])
    resp, call = stub.ModelInfer.with_call(req, metadata=[("x-request-id", "from-metadata")])
    assert resp.id == "from-metadata"
    assert ("x-request-id", "from-metadata") in call.initial_metadata()


def test_kserve_grpc_client_typed_and_raw(server):
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def run():
        client = InferenceGRPCClient(server.grpc_target, timeout=10)
        try:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            assert await client.is_model_ready("iris")
            typed = InferInput(name="input", shape=[3, 4], datatype="FP32", data=FLOWERS_NP.ravel().tolist())
            res = await client.infer(InferRequest(model_name="iris", infer_inputs=[typed], request_id="kserve-1"))
            assert res.id == "kserve-1"
            assert {o.name: o.as_numpy().tolist() for o in res.outputs}["label"] == LABELS
            raw = InferInput(name="input", shape=[3, 4], datatype="FP32")
            raw.set_data_from_numpy(FLOWERS_NP, binary_data=True)
            res = await client.infer(InferRequest(model_name="iris", infer_inputs=[raw], request_id="kserve-2"))
            assert {o.name: o.as_numpy().tolist() for o in res.outputs}["label"] == LABELS
        finally:
            await client.close()

    asyncio.run(run())


def raw_call(target, method, body: bytes):
    """Calls a method with a hand-encoded message; returns the answer's bytes."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(body, timeout=10)


def test_grpc_health_serving_and_unknown_service(server):
    # HealthCheckRequest{service: ""} is the empty message; SERVING is status 1 (field 1, varint).
    assert raw_call(server.grpc_target, "/grpc.health.v1.Health/Check", b"") == b"\x08\x01"
    service = b"inference.GRPCInferenceService"
    assert raw_call(server.grpc_target, "/grpc.health.v1.Health/Check", b"\x0a" + bytes([len(service)]) + service) == b"\x08\x01"
    with pytest.raises(grpc.RpcError) as e:
        raw_call(server.grpc_target, "/grpc.health.v1.Health/Check", b"\x0a\x04nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(server):
    # ServerReflectionRequest{list_services: ""} (field 7), as a one-message stream.
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        answers = list(call(iter([b"\x3a\x00"]), timeout=10))
    assert len(answers) == 1
    for name in (b"inference.GRPCInferenceService", b"grpc.health.v1.Health"):
        assert name in answers[0]


def test_grpc_requests_are_counted_with_the_code_name(server, stub):
    req = pb.ModelInferRequest(model_name="iris")
    req.inputs.add(name="input", datatype="FP32", shape=[1, 5]).contents.fp32_contents.extend([1.0] * 5)
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(req, timeout=10)
    text = requests.get(f"{server.url}/metrics").text
    assert 'modelship_requests_total{variant="primary",model="iris",protocol="grpc",code="OK"}' in text
    assert 'modelship_requests_total{variant="primary",model="iris",protocol="grpc",code="INVALID_ARGUMENT"}' in text


# Every datatype, through an ONNX model of Identity nodes (one per datatype), served by tract.
DATATYPES = {
    "BOOL": (TensorProto.BOOL, np.array([True, False]), "bool_contents"),
    "UINT8": (TensorProto.UINT8, np.array([0, 255], np.uint8), "uint_contents"),
    "UINT16": (TensorProto.UINT16, np.array([1, 65535], np.uint16), "uint_contents"),
    "UINT32": (TensorProto.UINT32, np.array([1, 2**32 - 1], np.uint32), "uint_contents"),
    "UINT64": (TensorProto.UINT64, np.array([1, 2**64 - 1], np.uint64), "uint64_contents"),
    "INT8": (TensorProto.INT8, np.array([-128, 127], np.int8), "int_contents"),
    "INT16": (TensorProto.INT16, np.array([-1, 300], np.int16), "int_contents"),
    "INT32": (TensorProto.INT32, np.array([-1, 2**31 - 1], np.int32), "int_contents"),
    "INT64": (TensorProto.INT64, np.array([-1, -(2**63)], np.int64), "int64_contents"),
    "FP16": (TensorProto.FLOAT16, np.array([1.5, -2.0], np.float16), None),
    "FP32": (TensorProto.FLOAT, np.array([1.5, -2.25], np.float32), "fp32_contents"),
    "FP64": (TensorProto.DOUBLE, np.array([1e300, -0.5], np.float64), "fp64_contents"),
    "BYTES": (TensorProto.STRING, np.array([b"ab", b"c d"], dtype=np.object_), "bytes_contents"),
}


def identity_model(path, datatypes):
    inputs, outputs, nodes = [], [], []
    for dt in datatypes:
        elem = DATATYPES[dt][0]
        inputs.append(helper.make_tensor_value_info(f"in_{dt}", elem, ["n"]))
        outputs.append(helper.make_tensor_value_info(f"out_{dt}", elem, ["n"]))
        nodes.append(helper.make_node("Identity", [f"in_{dt}"], [f"out_{dt}"]))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def identity_servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identity")
    everything, typed = tmp / "all.onnx", tmp / "typed.onnx"
    identity_model(everything, list(DATATYPES))
    identity_model(typed, [dt for dt, (_, _, field) in DATATYPES.items() if field])
    servers = [Server("--model", str(p), "--runtime", "tract") for p in (everything, typed)]
    yield servers
    for s in servers:
        assert s.alive()
        s.stop()


def test_every_datatype_round_trips_raw(identity_servers):
    seen = triton("datatypes", identity_servers[0].grpc_target)
    assert set(seen) == set(DATATYPES)
    for dt, got in seen.items():
        assert got["datatype"] == dt
        assert got["values"] == got["sent"], dt


def test_every_typed_datatype_round_trips_typed(identity_servers):
    s = identity_servers[1]
    req = pb.ModelInferRequest(model_name="typed")
    for dt, (_, values, field) in DATATYPES.items():
        if field:
            t = req.inputs.add(name=f"in_{dt}", datatype=dt, shape=[2])
            getattr(t.contents, field).extend(values.tolist())
    with grpc.insecure_channel(s.grpc_target) as channel:
        resp = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=10)
    raw = dict(zip((o.name for o in resp.outputs), resp.raw_output_contents))
    for dt, (_, values, field) in DATATYPES.items():
        if not field:
            continue
        if dt == "BYTES":
            assert raw[f"out_{dt}"] == b"\x02\x00\x00\x00ab\x03\x00\x00\x00c d"
        else:
            got = np.frombuffer(raw[f"out_{dt}"], dtype=values.dtype.newbyteorder("<"))
            assert got.tolist() == values.tolist(), dt


SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


def good_request():
    req = pb.ModelInferRequest(model_name="iris")
    req.inputs.add(name="input", datatype="FP32", shape=[3, 4]).contents.fp32_contents.extend(FLOWERS_NP.ravel().tolist())
    return req


def test_loading_is_unavailable_and_not_serving():
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowModelHandler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    grpc_port = free_port()
    target = f"127.0.0.1:{grpc_port}"
    proc = subprocess.Popen(
        [SERVER_BIN, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port", str(grpc_port),
         "--model", f"http://127.0.0.1:{files.server_address[1]}/iris.onnx", "--model-name", "iris", "--runtime", "tract"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                assert raw_call(target, "/grpc.health.v1.Health/Check", b"") == NOT_SERVING
                break
            except grpc.RpcError:
                assert time.time() < deadline, "the gRPC listener did not come up while loading"
                time.sleep(0.05)
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live
            assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(good_request(), timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "still loading" in e.value.details()
            deadline = time.time() + 30
            while not stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready:
                assert time.time() < deadline
                time.sleep(0.05)
            assert raw_call(target, "/grpc.health.v1.Health/Check", b"") == SERVING
            assert stub.ModelInfer(good_request(), timeout=5).raw_output_contents
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        files.shutdown()


def test_sigterm_turns_health_off_serves_through_the_drain_then_exits():
    s = Server("--model", "builtin://iris", "--runtime", "tract", "--drain-delay", "1500ms")
    try:
        with grpc.insecure_channel(s.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelInfer(good_request(), timeout=5).raw_output_contents
            s.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert raw_call(s.grpc_target, "/grpc.health.v1.Health/Check", b"") == NOT_SERVING
            assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
            # Still served during the drain delay, on the open channel.
            resp = stub.ModelInfer(good_request(), timeout=5)
            assert np.frombuffer(resp.raw_output_contents[0], dtype="<i8").tolist() == LABELS
        assert s.proc.wait(timeout=30) == 0
    finally:
        s.stop()

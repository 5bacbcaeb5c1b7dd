"""Bad input gets a clear 4xx with a JSON error naming the field, and the server keeps serving."""

import socket
import time

import pytest
import requests

from conftest import FLOWERS, Server

GOOD = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": FLOWERS[2]}]}


def still_serves(server):
    r = requests.post(f"{server.url}/v2/models/iris/infer", json=GOOD, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [2]


def inp(**over):
    base = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": FLOWERS[0]}
    base.update(over)
    return {"inputs": [base]}


CASES = [
    ("malformed json", '{"inputs": [ {"name": "input", ', 400, "invalid JSON body"),
    ("not an object", "[1, 2, 3]", 400, "invalid JSON body"),
    ("wrong shape", inp(shape=[1, 5], data=FLOWERS[0] + [1.0]), 400, "input 'input': shape [1, 5]"),
    ("wrong datatype", inp(datatype="INT64", data=[5, 3, 1, 0]), 400, "input 'input': expected datatype FP32, got INT64"),
    ("unknown datatype", inp(datatype="FLOAT32"), 400, "input 'input': unknown datatype"),
    ("too many values", inp(data=FLOWERS[0] + [9.9]), 400, "input 'input': shape [1, 4] needs 4 values but data has 5"),
    ("too few values", inp(data=[1.0]), 400, "needs 4 values but data has 1"),
    ("NaN literal", '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[NaN,1,2,3]}]}', 400, "invalid JSON body"),
    ("NaN string", inp(data=["NaN", 1, 2, 3]), 400, "input 'input': data is not valid FP32"),
    ("null element", inp(data=[None, 1, 2, 3]), 400, "input 'input': data is not valid FP32"),
    ("empty batch", inp(shape=[0, 4], data=[]), 400, "input 'input': the batch is empty"),
    ("unknown input", {"inputs": [{"name": "petals", "shape": [1, 4], "datatype": "FP32", "data": FLOWERS[0]}]}, 400, "input 'petals'"),
    ("no inputs", {"inputs": []}, 400, "inputs: at least one input"),
    ("negative dim", inp(shape=[-1, 4]), 400, "negative dimension"),
    ("unknown output", dict(inp(), outputs=[{"name": "nope"}]), 400, "outputs: the model has no output 'nope'"),
]


@pytest.mark.parametrize("name,body,status,message", CASES, ids=[c[0] for c in CASES])
def test_bad_request(server, name, body, status, message):
    url = f"{server.url}/v2/models/iris/infer"
    if isinstance(body, str):
        r = requests.post(url, data=body, headers={"Content-Type": "application/json"})
    else:
        r = requests.post(url, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert message in r.json()["error"], r.json()
    still_serves(server)


def test_unknown_model_and_version(server):
    r = requests.post(f"{server.url}/v2/models/nope/infer", json=GOOD)
    assert r.status_code == 404
    assert "model 'nope'" in r.json()["error"]
    r = requests.get(f"{server.url}/v2/models/iris/versions/7")
    assert r.status_code == 404
    assert "version '7'" in r.json()["error"]
    r = requests.get(f"{server.url}/v2/models/nope/ready")
    assert r.status_code == 404
    r = requests.get(f"{server.url}/no/such/route")
    assert r.status_code == 404 and "error" in r.json()
    still_serves(server)


def test_a_wrong_method_is_a_405_with_a_json_error_and_allow(server):
    r = requests.get(f"{server.url}/v2/models/iris/infer")
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/json")
    assert "method GET is not allowed" in r.json()["error"], r.text
    assert "POST" in r.headers.get("allow", ""), r.headers
    r = requests.delete(f"{server.url}/v2/models/iris")
    assert r.status_code == 405 and "DELETE" in r.json()["error"]
    still_serves(server)


def test_bad_binary_header(server):
    r = requests.post(
        f"{server.url}/v2/models/iris/infer",
        data=b'{"inputs":[]}',
        headers={"Inference-Header-Content-Length": "999"},
    )
    assert r.status_code == 400
    assert "inference-header-content-length" in r.json()["error"]
    still_serves(server)


def test_oversized_body_and_slow_client():
    s = Server("--model", "builtin://iris", "--max-body-bytes", "4096", "--body-timeout", "2s")
    try:
        big = inp(shape=[1000, 4], data=FLOWERS[0] * 1000)
        r = requests.post(f"{s.url}/v2/models/iris/infer", json=big)
        assert r.status_code == 413, r.text
        assert "limit of 4096 bytes" in r.json()["error"]
        still_serves(s)

        # A client that announces a body and then stalls: others are served
        # meanwhile, and the stalled request ends with 408.
        sock = socket.create_connection(("127.0.0.1", s.port))
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n{\"inputs\":"
        )
        started = time.time()
        still_serves(s)
        sock.settimeout(15)
        reply = sock.recv(4096).decode(errors="replace")
        sock.close()
        assert reply.startswith("HTTP/1.1 408"), reply
        assert time.time() - started < 10
        still_serves(s)
    finally:
        assert s.stop() == 0

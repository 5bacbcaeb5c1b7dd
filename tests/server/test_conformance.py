"""Open Inference Protocol v2 conformance, proven with third-party clients."""

import asyncio

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from conftest import FLOWERS, LABELS


def triton_client(server):
    return triton.InferenceServerClient(url=server.host_port)


def test_triton_health_and_metadata(server):
    c = triton_client(server)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("iris")
    meta = c.get_model_metadata("iris")
    assert meta["name"] == "iris"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [-1, 3]
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_triton_infer_reference_flowers(server, binary_in, binary_out):
    c = triton_client(server)
    x = np.array(FLOWERS, dtype=np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outs = [
        triton.InferRequestedOutput("label", binary_data=binary_out),
        triton.InferRequestedOutput("probabilities", binary_data=binary_out),
    ]
    res = c.infer("iris", [inp], outputs=outs, request_id="flowers-1")
    assert res.get_response()["id"] == "flowers-1"
    assert res.as_numpy("label").tolist() == LABELS
    probs = res.as_numpy("probabilities")
    assert probs.shape == (3, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == np.array(LABELS)).all()


def test_triton_single_flowers(server):
    c = triton_client(server)
    for flower, label in zip(FLOWERS, LABELS):
        x = np.array([flower], dtype=np.float32)
        inp = triton.InferInput("input", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        res = c.infer("iris", [inp])
        assert res.as_numpy("label").tolist() == [label]


def test_triton_output_selection(server):
    c = triton_client(server)
    inp = triton.InferInput("input", [1, 4], "FP32")
    inp.set_data_from_numpy(np.array([FLOWERS[2]], dtype=np.float32))
    res = c.infer("iris", [inp], outputs=[triton.InferRequestedOutput("label")])
    names = [o["name"] for o in res.get_response()["outputs"]]
    assert names == ["label"]
    assert res.as_numpy("label").tolist() == [2]


def test_kserve_rest_client_v2(server):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def run():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
        try:
            assert await client.is_server_live(server.url)
            assert await client.is_server_ready(server.url)
            assert await client.is_model_ready(server.url, "iris")
            inp = InferInput(name="input", shape=[3, 4], datatype="FP32", data=FLOWERS)
            req = InferRequest(model_name="iris", infer_inputs=[inp], request_id="kserve-1")
            res = await client.infer(server.url, req, model_name="iris")
            by_name = {o.name: o for o in res.outputs}
            assert list(by_name["label"].data) == LABELS
            assert res.id == "kserve-1"
        finally:
            await client.close()

    asyncio.run(run())


def test_v1_predict(server):
    r = requests.post(f"{server.url}/v1/models/iris:predict", json={"instances": FLOWERS})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == LABELS
    r = requests.get(f"{server.url}/v1/models/iris")
    assert r.json() == {"name": "iris", "ready": True}


def test_id_is_generated_when_absent_and_json_accepted_with_any_content_type(server):
    body = '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
    r = requests.post(f"{server.url}/v2/models/iris/infer", data=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json()["id"]
    assert r.headers["x-request-id"]


def test_nested_data_and_unknown_parameters(server):
    body = {
        "parameters": {"something_new": 1},
        "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": FLOWERS, "parameters": {"x": "y"}}],
    }
    r = requests.post(f"{server.url}/v2/models/iris/infer", json=body)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["label"]["data"] == LABELS
    assert out["label"]["shape"] == [3]


def test_metrics_count_requests(server):
    requests.post(f"{server.url}/v2/models/iris/infer", json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": FLOWERS[0]}]})
    text = requests.get(f"{server.url}/metrics").text
    assert 'modelship_requests_total{variant="primary",model="iris",protocol="v2",code="200"}' in text
    assert "modelship_batch_size_bucket" in text
    assert "modelship_model_load_duration_seconds" in text

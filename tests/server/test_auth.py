"""API keys (--api-keys-dir) and the variant header (--variant): which routes ask for a key, the
401 answer, both header forms, gRPC metadata, a key rotated in the directory while requests keep
coming, and a directory without keys refusing everything."""

import os
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from conftest import FLOWERS, LABELS, Server
from test_web_page import browser, fill_flower  # noqa: F401  (browser: the Chromium fixture; skips with its reason)

# The server reads the directory every 2 s (auth::RELOAD_INTERVAL); the tests allow a margin.
RELOAD_WITHIN_S = 6
INFER = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": sum(FLOWERS, [])}]}


def secret_volume(root: Path, generation: str, keys: dict[str, str]) -> None:
    """Writes `keys` as the kubelet lays out a Secret volume: the files in `..GENERATION`, the
    `..data` link swapped atomically to it, one `NAME -> ..data/NAME` link per key."""
    data = root / f"..{generation}"
    data.mkdir()
    for name, value in keys.items():
        (data / name).write_text(value + "\n")
    tmp = root / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, root / "..data")
    for name in keys:
        link = root / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for name in os.listdir(root):
        if not name.startswith(".") and name not in keys:
            (root / name).unlink()


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-keys")
    secret_volume(root, "2026_12_01_00_00_00.1", {"alice": "alice-key-1", "ci": "ci-key-1"})
    return root


@pytest.fixture(scope="module")
def locked(keys_dir):
    s = Server("--model", "builtin://iris", "--runtime", "tract", "--api-keys-dir", str(keys_dir), "--variant", "canary")
    yield s
    assert s.alive(), "the server died during the tests"
    s.stop()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_no_key_is_401_with_a_challenge_and_a_json_error(locked):
    r = requests.post(f"{locked.url}/v2/models/iris/infer", json=INFER, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="modelship"'
    assert r.headers["content-type"].startswith("application/json")
    assert "API key is required" in r.json()["error"]


def test_a_wrong_key_is_401(locked):
    for headers in (bearer("nope"), {"X-API-Key": "nope"}, bearer("alice-key-1x"), {"Authorization": "Basic alice-key-1"}):
        r = requests.post(f"{locked.url}/v2/models/iris/infer", json=INFER, headers=headers, timeout=10)
        assert r.status_code == 401, headers
        assert r.json()["error"]


def test_the_right_key_in_either_header_is_served(locked):
    for headers in (bearer("alice-key-1"), {"X-API-Key": "ci-key-1"}, {"authorization": "bearer ci-key-1"}):
        r = requests.post(f"{locked.url}/v2/models/iris/infer", json=INFER, headers=headers, timeout=10)
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["outputs"][0]["data"] == LABELS


def test_every_route_with_model_data_asks_for_the_key_and_probes_stay_open(locked):
    protected = [
        ("get", "/v2/models/iris"),
        ("get", "/v2/models/iris/versions/1"),
        ("post", "/v2/models/iris/infer"),
        ("post", "/v2/models/iris/versions/1/infer"),
        ("post", "/v1/models/iris:predict"),
        ("get", "/models/iris/card"),
    ]
    for method, path in protected:
        r = requests.request(method, f"{locked.url}{path}", json=INFER, timeout=10)
        assert r.status_code == 401, path
    ok = requests.post(f"{locked.url}/v1/models/iris:predict", json={"instances": FLOWERS}, headers=bearer("ci-key-1"), timeout=10)
    assert ok.status_code == 200 and [p["label"] for p in ok.json()["predictions"]] == LABELS
    assert requests.get(f"{locked.url}/v2/models/iris", headers=bearer("ci-key-1"), timeout=10).json()["name"] == "iris"
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/iris/ready", "/v1/models/iris", "/v2",
                 "/metrics", "/openapi.json", "/", "/models/iris", "/assets/model.js"):
        assert requests.get(f"{locked.url}{path}", timeout=10).status_code == 200, path


def test_keys_are_counted_by_label_and_never_shown(locked):
    requests.post(f"{locked.url}/v2/models/iris/infer", json=INFER, headers=bearer("alice-key-1"), timeout=10)
    text = requests.get(f"{locked.url}/metrics", timeout=10).text
    assert 'modelship_auth_total{variant="canary",key="alice",result="ok"}' in text
    assert 'modelship_auth_total{variant="canary",key="",result="missing"}' in text
    assert 'modelship_auth_total{variant="canary",key="",result="wrong"}' in text
    log = Path(locked.log.name).read_text()
    assert "alice" in log  # the labels are logged when the keys load ...
    assert "alice-key-1" not in text and "alice-key-1" not in log  # ... the keys never


def test_every_answer_names_the_variant(locked):
    r = requests.post(f"{locked.url}/v2/models/iris/infer", json=INFER, headers=bearer("ci-key-1"), timeout=10)
    assert r.headers["x-modelship-variant"] == "canary"
    assert requests.get(f"{locked.url}/v2/health/ready", timeout=10).headers["x-modelship-variant"] == "canary"
    text = requests.get(f"{locked.url}/metrics", timeout=10).text
    assert 'modelship_requests_total{variant="canary",model="iris",protocol="v2",code="200"}' in text


def test_a_server_without_keys_dir_asks_for_none_and_is_primary(server):
    r = requests.post(f"{server.url}/v2/models/iris/infer", json=INFER, timeout=10)
    assert r.status_code == 200
    assert r.headers["x-modelship-variant"] == "primary"


def grpc_infer_request():
    req = pb.ModelInferRequest(model_name="iris")
    req.inputs.add(name="input", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(FLOWERS[2])
    return req


def test_grpc_asks_for_the_key_in_metadata(locked):
    with grpc.insecure_channel(locked.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for metadata in ([], [("authorization", "Bearer nope")], [("x-api-key", "nope")]):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(grpc_infer_request(), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        for metadata in ([("authorization", "Bearer alice-key-1")], [("x-api-key", "ci-key-1")]):
            resp, call = stub.ModelInfer.with_call(grpc_infer_request(), metadata=metadata, timeout=10)
            assert resp.model_name == "iris"
            assert ("x-modelship-variant", "canary") in call.initial_metadata()
            assert stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"), metadata=metadata, timeout=10).name == "iris"
        # Probes stay open.
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="iris"), timeout=10).ready


def test_a_rotated_key_takes_effect_without_restart_or_failed_request(tmp_path):
    secret_volume(tmp_path, "gen1", {"app": "old-key"})
    s = Server("--model", "builtin://iris", "--runtime", "tract", "--api-keys-dir", str(tmp_path))
    try:
        pid = s.proc.pid
        assert requests.post(f"{s.url}/v2/models/iris/infer", json=INFER, headers=bearer("old-key"), timeout=10).status_code == 200
        codes, errors, stop = [], [], threading.Event()

        def load():
            with requests.Session() as session:
                while not stop.is_set() and len(codes) < 20000:
                    key = "old-key" if len(codes) % 2 else "new-key"
                    try:
                        r = session.post(f"{s.url}/v2/models/iris/infer", json=INFER, headers=bearer(key), timeout=10)
                        codes.append(r.status_code)
                    except requests.RequestException as e:
                        errors.append(repr(e))

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(0.3)
        secret_volume(tmp_path, "gen2", {"app": "new-key"})
        rotated_at = time.time()
        deadline = rotated_at + RELOAD_WITHIN_S
        swapped = False
        while time.time() < deadline:
            new = requests.post(f"{s.url}/v2/models/iris/infer", json=INFER, headers=bearer("new-key"), timeout=10)
            old = requests.post(f"{s.url}/v2/models/iris/infer", json=INFER, headers=bearer("old-key"), timeout=10)
            if (new.status_code, old.status_code) == (200, 401):
                swapped = True
                break
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        worker.join(timeout=30)
        assert swapped, f"the rotated key did not take effect within {RELOAD_WITHIN_S}s"
        assert not errors, errors[:3]
        assert codes and set(codes) <= {200, 401}, sorted(set(codes))
        assert s.alive() and s.proc.pid == pid
    finally:
        s.stop()


def test_a_keys_dir_without_keys_refuses_everything(tmp_path):
    s = Server("--model", "builtin://iris", "--runtime", "tract", "--api-keys-dir", str(tmp_path / "absent"))
    try:
        for headers in ({}, bearer("anything")):
            r = requests.post(f"{s.url}/v2/models/iris/infer", json=INFER, headers=headers, timeout=10)
            assert r.status_code == 401
        assert "no API key is configured" in r.json()["error"]
        assert requests.get(f"{s.url}/v2/health/ready", timeout=10).status_code == 200
        assert "every request to a protected route is refused" in Path(s.log.name).read_text()
    finally:
        s.stop()


def test_the_page_asks_for_the_key_and_keeps_it_for_the_tab(locked, browser):  # noqa: F811
    page = browser.new_page()
    page.set_default_timeout(15_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(locked.url + "/models/iris")
        page.wait_for_selector("#key-form:not([hidden])")
        page.fill("#api-key", "not-a-key")
        page.get_by_role("button", name="Use this key").click()
        page.wait_for_function("document.getElementById('key-help').textContent.includes('refused')")
        page.fill("#api-key", "alice-key-1")
        page.get_by_role("button", name="Use this key").click()
        page.wait_for_selector("#single:not([hidden])")
        assert page.is_hidden("#key-form")
        fill_flower(page, FLOWERS[2])
        page.get_by_role("button", name="Predict").click()
        prediction = page.locator("#single-result .prediction")
        prediction.wait_for()
        assert prediction.inner_text() == "virginica"
        assert page.evaluate("sessionStorage.getItem('modelship-api-key')") == "alice-key-1"
        assert page.evaluate("localStorage.length") == 0
        # A reload in the same tab keeps the key: no question.
        page.reload()
        page.wait_for_selector("#single:not([hidden])")
        assert page.is_hidden("#key-form")
    finally:
        page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"

"""No secret in any log line: servers at the most verbose log level (`--log trace`, every
dependency's spans and events) are given a presigned model URL, S3 credentials and API keys,
and used with good and bad keys; then their logs are searched for each secret. (The
session-wide check in conftest.py searches every other server's log of the suite too.)"""

import http.server
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import FLOWERS, LABELS, KNOWN_SECRETS, SERVER_BIN, Server, free_port

REPO = Path(__file__).resolve().parents[2]
IRIS = (REPO / "models" / "iris.onnx").read_bytes()

SIGNATURE = "5ecre7519a7ure0f7he9re5igned0r1"
CREDENTIAL = "AKIAMODELSHIPTESTCRED"
S3_KEY_ID = "AKIAMODELSHIPS3KEYID"
S3_SECRET = "modelship-s3-secret-do-not-log"
API_KEY = "modelship-api-key-do-not-log"
WRONG_KEY = "modelship-wrong-key-do-not-log"
# They are in tests/secrets.txt, so the session-wide checks look for them everywhere.
assert all(s in KNOWN_SECRETS for s in (SIGNATURE, CREDENTIAL, S3_SECRET, API_KEY, WRONG_KEY))

TRACE = ("--log", "trace", "--runtime", "tract")


class Origin(http.server.BaseHTTPRequestHandler):
    """Serves iris.onnx for any query string (as a presigned URL would); no card."""

    def do_GET(self):
        if self.path.split("?")[0] == "/models/iris.onnx":
            self.send_response(200)
            self.send_header("Content-Length", str(len(IRIS)))
            self.end_headers()
            self.wfile.write(IRIS)
        else:
            self.send_response(403)  # what S3 answers for an unsigned sibling
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def assert_no_secret(text: str, where: str):
    leaked = [s for s in KNOWN_SECRETS if s in text]
    assert not leaked, f"{where} shows {leaked}"


def presigned(origin: str, path: str = "/models/iris.onnx") -> str:
    return (f"{origin}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}%2F20261201%2Fus-east-1"
            f"&X-Amz-Signature={SIGNATURE}")


def test_a_presigned_model_url_and_api_keys_stay_out_of_trace_logs(origin, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "app").write_text(API_KEY)
    s = Server("--model", presigned(origin), "--api-keys-dir", str(keys), *TRACE)
    try:
        infer = f"{s.url}/v2/models/iris/infer"
        body = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": FLOWERS}]}
        for headers, status in [
            ({"Authorization": f"Bearer {API_KEY}"}, 200),
            ({"X-API-Key": API_KEY}, 200),
            ({"Authorization": f"Bearer {WRONG_KEY}"}, 401),
            ({"X-API-Key": WRONG_KEY}, 401),
        ]:
            r = requests.post(infer, json=body, headers=headers, timeout=10)
            assert r.status_code == status, r.text
            if status == 200:
                assert r.json()["outputs"][0]["data"] == LABELS
            assert_no_secret(r.text, "an answer")
        metadata = requests.get(f"{s.url}/v2/models/iris", headers={"X-API-Key": API_KEY}, timeout=10)
        assert metadata.status_code == 200
        assert_no_secret(metadata.text, "the model's metadata")
        page = requests.get(f"{s.url}/", timeout=10)
        assert_no_secret(page.text, "the page")
    finally:
        s.stop()
    log = Path(s.log.name).read_text()
    # The log is the verbose one asked for: the model's fetch and the requests are in it.
    assert "TRACE" in log and origin.split("//")[1] in log, log[-2000:]
    assert_no_secret(log, "the server's trace log")


def run_fetch(uri: str, tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVER_BIN, "--log", "trace", "fetch", uri, str(tmp_path / "models"), "--attempts", "2", "--retry-delay", "10ms"],
        env={**os.environ, "MODELSHIP_TERMINATION_LOG": str(tmp_path / "termination-log"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fetch_errors_and_retries_show_no_signature_or_credentials(origin, tmp_path):
    # A good presigned URL, a 403 one, and one whose host refuses (retried, then given up).
    ok = run_fetch(presigned(origin), tmp_path, {})
    assert ok.returncode == 0, ok.stderr[-2000:]
    denied = run_fetch(presigned(origin, "/private/iris.onnx"), tmp_path, {})
    assert denied.returncode == 12, denied.stderr[-2000:]
    refused = run_fetch(presigned(f"http://127.0.0.1:{free_port()}"), tmp_path, {})
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "retrying" in refused.stderr
    for run, name in [(ok, "fetch"), (denied, "a refused fetch"), (refused, "a retried fetch")]:
        assert_no_secret(run.stdout + run.stderr, f"{name}'s output")
    assert_no_secret((tmp_path / "termination-log").read_text(), "the termination message")


def test_s3_credentials_stay_out_of_trace_logs(tmp_path):
    moto = REPO / ".venv" / "bin" / "moto_server"
    assert moto.exists(), f"{moto} is missing (scripts/setup-python.sh)"
    port = free_port()
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                requests.put(f"{endpoint}/models", timeout=2)
                break
            except requests.ConnectionError:
                assert time.time() < deadline, "moto did not start"
                time.sleep(0.2)
        assert requests.put(f"{endpoint}/models/iris.onnx", data=IRIS, timeout=10).ok
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_REGION": "us-east-1"}
        ok = run_fetch("s3://models/iris.onnx", tmp_path, env)
        assert ok.returncode == 0, ok.stderr[-2000:]
        missing = run_fetch("s3://models/nope.onnx", tmp_path, env)
        assert missing.returncode == 12, missing.stderr[-2000:]
        # The request is signed: the trace log is verbose enough to show its headers' names.
        assert "TRACE" in ok.stderr
        for run in (ok, missing):
            assert_no_secret(run.stdout + run.stderr, "an S3 fetch's output")
        old_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            s = Server("--model", "s3://models/iris.onnx", *TRACE)
        finally:
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        s.stop()
        assert_no_secret(Path(s.log.name).read_text(), "an S3-serving server's trace log")
    finally:
        proc.terminate()
        proc.wait()

"""Readiness follows the model's life: not ready while loading, ready after
warm-up, not ready while draining on SIGTERM; a bad model ends the process
with its cause in the termination log."""

import http.server
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from conftest import FLOWERS, SERVER_BIN, free_port

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": FLOWERS}]}


class SlowModelHandler(http.server.BaseHTTPRequestHandler):
    """Serves models/iris.onnx after a delay, and 404 for anything else."""

    delay = 3.0

    def do_GET(self):
        if self.path != "/iris.onnx":
            self.send_error(404)
            return
        time.sleep(self.delay)
        body = (ROOT / "models/iris.onnx").read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start(*args, env=None):
    port = free_port()
    proc = subprocess.Popen(
        [SERVER_BIN, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_for(pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False


def test_live_but_not_ready_while_the_model_loads():
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowModelHandler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    model_url = f"http://127.0.0.1:{files.server_address[1]}/iris.onnx"
    proc, url = start("--model", model_url, "--model-name", "iris", "--runtime", "tract")
    try:
        assert wait_for(lambda: requests.get(f"{url}/v2/health/live", timeout=1).status_code == 200)
        r = requests.get(f"{url}/v2/health/ready", timeout=1)
        assert r.status_code == 503 and r.json() == {"ready": False}
        r = requests.post(f"{url}/v2/models/iris/infer", json=GOOD, timeout=5)
        assert r.status_code == 503 and "still loading" in r.json()["error"]
        assert requests.get(f"{url}/v2/models/iris/ready", timeout=1).json() == {"name": "iris", "ready": False}
        assert wait_for(lambda: requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200)
        assert requests.post(f"{url}/v2/models/iris/infer", json=GOOD, timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        files.shutdown()


def test_sigterm_drains_in_flight_requests_then_exits_cleanly():
    proc, url = start("--model", "builtin://iris", "--drain-delay", "1500ms")
    assert wait_for(lambda: requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200)
    stop = time.time() + 3.0
    codes = []

    def hammer():
        s = requests.Session()
        while time.time() < stop:
            try:
                codes.append(s.post(f"{url}/v2/models/iris/infer", json=GOOD, timeout=5).status_code)
            except requests.ConnectionError:
                return  # the listener closed after the drain delay: expected

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # During the drain delay readiness is false while requests still succeed.
        assert requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 503
        for f in futures:
            f.result()
    assert proc.wait(timeout=30) == 0
    assert codes and all(c in (200, 503) for c in codes), set(codes)
    assert codes.count(200) > 10


def test_a_bad_model_file_exits_with_its_cause(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    log = tmp_path / "termination-log"
    proc, _ = start("--model", str(bad), env={"MODELSHIP_TERMINATION_LOG": str(log)})
    assert proc.wait(timeout=30) != 0
    message = log.read_text()
    assert "model load failed" in message, message
    assert "protobuf" in message.lower() or "not a valid onnx" in message.lower(), message


def test_a_missing_model_exits_with_a_fetch_error(tmp_path):
    log = tmp_path / "termination-log"
    proc, _ = start("--model", str(tmp_path / "nope.onnx"), env={"MODELSHIP_TERMINATION_LOG": str(log)})
    assert proc.wait(timeout=30) != 0
    assert "model fetch failed" in log.read_text()

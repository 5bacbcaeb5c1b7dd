"""The real modelship-server binary, started on one model with one runtime."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import requests

SERVER_BIN = os.environ.get("MODELSHIP_SERVER_BIN", "")
# The onnxruntime wheel's own library (the version tests/zoo/requirements.txt pins).
ORT_LIBRARY = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Refused(Exception):
    """The server would not serve the model: the message is its error line."""


class Served:
    """One server process serving `onnx_path` with `runtime` (tract or onnxruntime)."""

    def __init__(self, onnx_path: Path, runtime: str):
        if not SERVER_BIN or not os.path.exists(SERVER_BIN):
            raise RuntimeError(f"MODELSHIP_SERVER_BIN={SERVER_BIN!r} is not a built binary (run via `make test-zoo`)")
        if runtime == "onnxruntime" and not ORT_LIBRARY:
            raise RuntimeError("the onnxruntime wheel has no libonnxruntime.so")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="modelship-zoo-", suffix=".log")
        args = [SERVER_BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--grpc-port", "0",
                "--model", str(onnx_path), "--model-name", "model", "--runtime", runtime, "--log-format", "text"]
        if runtime == "onnxruntime":
            args += ["--ort-library", ORT_LIBRARY[0]]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Refused(self._error_line())
            try:
                if requests.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not become ready in 60 s: {self._log()[-2000:]}")

    def _log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def _error_line(self) -> str:
        lines = [line for line in self._log().splitlines() if line.startswith("modelship-server: ")]
        return lines[-1].removeprefix("modelship-server: ") if lines else self._log()[-2000:]

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The rows as one FP32 tensor in the binary extension (NaN, for the imputer, has no JSON)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        raw = x.tobytes()
        header = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                         "parameters": {"binary_data_size": len(raw)}}]}).encode()
        r = requests.post(
            f"{self.url}/v2/models/model/infer", data=header + raw, timeout=60,
            headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
        )
        if r.status_code != 200:
            raise RuntimeError(f"infer answered {r.status_code}: {r.text}")
        return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

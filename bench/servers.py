"""The servers and the load generator of `make bench-server`.

Every server listens on 127.0.0.1 and is pinned to one core (SERVER_CPU); the
load generator oha is pinned to the other (LOAD_CPU). Each load run is bounded
in time by oha's `-z`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
OHA = Path(os.environ.get("MODELSHIP_TOOLS", Path.home() / ".cache/modelship/tools")) / "bin/oha"
BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6.9, 3.1, 5.4, 2.1]}]})
SERVER_CPU = "0"
LOAD_CPU = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *cmd] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else cmd


class Peer:
    """One server process: started on entry (ready once a real request succeeds), stopped on exit."""

    def __init__(self, name: str, cmd: list[str], port: int, ready_path: str | None, cwd=None, env=None,
                 model: str = "iris", body: str = BODY):
        self.name, self.cmd, self.port, self.ready_path = name, cmd, port, ready_path
        self.cwd, self.env, self.body = cwd, env, body
        self.url = f"http://127.0.0.1:{port}/v2/models/{model}/infer"

    def __enter__(self):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="bench-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(pinned(SERVER_CPU, self.cmd), stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                if self.ready_path is None or requests.get(
                        f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=1).status_code == 200:
                    check = requests.post(self.url, data=self.body, headers={"Content-Type": "application/json"}, timeout=5)
                    if check.status_code == 200:
                        return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready in 120s: {Path(self.log.name).read_text()[-3000:]}")

    def rss_mib(self) -> float:
        total = 0
        pids = [self.proc.pid]
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        Path(self.log.name).unlink(missing_ok=True)


def oha(url: str, seconds: float, connections: int, rate: int | None = None, body: str = BODY) -> dict:
    """One bounded load run: closed loop over `connections`, or open loop at `rate` req/s."""
    cmd = [str(OHA), "-z", f"{seconds}s", "-c", str(connections), "--no-tui", "--output-format", "json",
           "-m", "POST", "-H", "Content-Type: application/json", "-d", body]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    out = subprocess.run(pinned(LOAD_CPU, cmd + [url]), capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed: {out.stderr}")
    data = json.loads(out.stdout)
    codes = data.get("statusCodeDistribution", {})
    # oha cancels the requests in flight when the time is up and lists them as
    # "aborted due to deadline": one per connection, not a server error.
    errors = {k: v for k, v in data.get("errorDistribution", {}).items() if "deadline" not in k}
    total = sum(codes.values()) + sum(errors.values())
    ok = codes.get("200", 0)
    pct = data.get("latencyPercentiles", {})
    return {
        "rps": ok / seconds,
        "p50_ms": (pct.get("p50") or 0) * 1000,
        "p99_ms": (pct.get("p99") or 0) * 1000,
        "errors": total - ok,
        "requests": total,
    }


def mlserver_dir(tmp: Path, port: int) -> Path:
    """MLServer's model repository: the same scikit-learn Iris model as joblib."""
    sys.path.insert(0, str(ROOT / "models"))
    import joblib
    from generate import iris_logistic_regression

    model = iris_logistic_regression()[0]
    d = tmp / "mlserver"
    (d / "iris").mkdir(parents=True)
    joblib.dump(model, d / "iris" / "model.joblib")
    (d / "iris" / "model-settings.json").write_text(json.dumps({
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }))
    (d / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": 0, "debug": False,
    }))
    return d


def modelship(name: str, runtime: str, *flags: str, model: str = "builtin://iris", model_name: str = "iris",
              body: str = BODY) -> Peer:
    port = free_port()
    server = TARGET / "release/modelship-server"
    return Peer(name, [str(server), "serve", "--model", model, "--model-name", model_name, "--runtime", runtime,
                       "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0", "--log", "warn", *flags],
                port, "/v2/health/ready", cwd=ROOT, model=model_name, body=body)


def peers(tmp: Path, old_policy: bool) -> list[Peer]:
    """Every server of the benchmark, in the order of the tables."""
    venv_py = ROOT / ".venv/bin/python"
    ml_port, ks_port, empty_port = free_port(), free_port(), free_port()
    out = [
        modelship("modelship", "tract"),
        modelship("modelship (batching off)", "tract", "--max-batch-size", "1"),
    ]
    if old_policy:
        out.append(modelship("modelship (old policy)", "tract", "--batch-wait", "fixed"))
    out += [
        modelship("modelship (onnxruntime)", "onnxruntime"),
        Peer("MLServer 1.7.1", [str(ROOT / ".venv-mlserver/bin/mlserver"), "start", str(mlserver_dir(tmp, ml_port))],
             ml_port, "/v2/health/ready"),
        Peer("KServe 0.21", [str(venv_py), str(ROOT / "bench/kserve_server.py"), str(ks_port),
                             str(ROOT / "models/iris.onnx")], ks_port, "/v2/health/ready"),
        # The empty handler has no readiness route: a successful POST is its readiness.
        Peer("empty axum handler", [str(TARGET / "release/examples/empty_axum"), str(empty_port)], empty_port, None),
    ]
    return out

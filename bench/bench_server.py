"""`make bench-server`: modelship against MLServer and KServe on the same Iris
model and the same load, in one run on one machine; writes docs/benchmarks.md.

Every server listens on 127.0.0.1 and is pinned to one core; the load
generator (oha) is pinned to the other. Each load run is bounded in time.
"""

import argparse
import json
import os
import re
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
    return ["taskset", "-c", cpu, *cmd] if shutil.which("taskset") and os.cpu_count() > 1 else cmd


class Peer:
    def __init__(self, name: str, cmd: list[str], port: int, ready_path: str | None, cwd=None, env=None):
        self.name, self.cmd, self.port, self.ready_path = name, cmd, port, ready_path
        self.cwd, self.env = cwd, env
        self.url = f"http://127.0.0.1:{port}/v2/models/iris/infer"

    def __enter__(self):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="bench-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(pinned(SERVER_CPU, self.cmd), stdout=self.log, stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                # Ready means: the readiness route says so (when there is one) and a real request succeeds.
                if self.ready_path is None or requests.get(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=1).status_code == 200:
                    check = requests.post(self.url, data=BODY, headers={"Content-Type": "application/json"}, timeout=5)
                    if check.status_code == 200:
                        return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready in 120s: {Path(self.log.name).read_text()[-3000:]}")

    def rss_mib(self) -> float:
        total = 0
        pids = [self.proc.pid]
        try:
            pids += [int(p) for p in subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()]
        except OSError:
            pass
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


def oha(url: str, seconds: int, connections: int, rate: int | None) -> dict:
    cmd = [str(OHA), "-z", f"{seconds}s", "-c", str(connections), "--no-tui", "--output-format", "json",
           "-m", "POST", "-H", "Content-Type: application/json", "-d", BODY]
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
    sys.path.insert(0, str(ROOT / "models"))
    import joblib
    from generate import iris_logistic_regression

    model, _ = iris_logistic_regression()
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


def runtime_rates() -> list[dict]:
    exe = TARGET / "release/examples/runtime_rate"
    out = subprocess.run(pinned(SERVER_CPU, [str(exe), "iris", "3"]), capture_output=True, text=True, check=True, cwd=ROOT)
    rates = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT / "models"))
    from generate import iris_logistic_regression

    x = np.array([[6.9, 3.1, 5.4, 2.1]], dtype=np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(ROOT / "models/iris.onnx"), opts, providers=["CPUExecutionProvider"])
    model, _ = iris_logistic_regression()
    for name, fn in [("onnxruntime (Python)", lambda: sess.run(None, {"input": x})), ("scikit-learn predict (Python)", lambda: model.predict(x))]:
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3:
            fn()
            n += 1
        rates.append({"runtime": name, "model": "iris", "inferences_per_second": round(n / (time.perf_counter() - started))})
    return rates


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10, help="length of each load run")
    ap.add_argument("--connections", type=int, default=32, help="closed-loop concurrency")
    ap.add_argument("--rate", type=int, default=500, help="open-loop request rate (req/s)")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    args = ap.parse_args()

    server = TARGET / "release/modelship-server"
    empty = TARGET / "release/examples/empty_axum"
    tmp = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    ports = {k: free_port() for k in ["tract", "ort", "mlserver", "kserve", "empty"]}
    venv_py = ROOT / ".venv/bin/python"
    peers = [
        Peer("modelship (tract)", [str(server), "serve", "--model", "builtin://iris", "--runtime", "tract", "--host", "127.0.0.1", "--port", str(ports["tract"])], ports["tract"], "/v2/health/ready"),
        Peer("modelship (onnxruntime)", [str(server), "serve", "--model", "builtin://iris", "--runtime", "onnxruntime", "--host", "127.0.0.1", "--port", str(ports["ort"])], ports["ort"], "/v2/health/ready", cwd=ROOT),
        Peer("MLServer 1.7.1 (mlserver-sklearn)", [str(ROOT / ".venv-mlserver/bin/mlserver"), "start", str(mlserver_dir(tmp, ports["mlserver"]))], ports["mlserver"], "/v2/health/ready"),
        Peer("KServe 0.21 (kserve.Model + onnxruntime)", [str(venv_py), str(ROOT / "bench/kserve_server.py"), str(ports["kserve"]), str(ROOT / "models/iris.onnx")], ports["kserve"], "/v2/health/ready"),
        # The empty handler has no readiness route: a successful POST is its readiness.
        Peer("empty axum handler", [str(empty), str(ports["empty"])], ports["empty"], None),
    ]

    results = []
    for peer in peers:
        print(f"== {peer.name}", flush=True)
        with peer:
            oha(peer.url, 2, args.connections, None)  # warm-up, not recorded
            closed = oha(peer.url, args.seconds, args.connections, None)
            opened = oha(peer.url, args.seconds, args.connections, args.rate)
            rss = peer.rss_mib()
        results.append({"name": peer.name, "closed": closed, "open": opened, "rss_mib": rss})
        print(json.dumps(results[-1]), flush=True)
    rates = runtime_rates()
    write_report(Path(args.out), results, rates, args)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def write_report(path: Path, results: list[dict], rates: list[dict], args) -> None:
    by = {r["name"]: r for r in results}
    mlserver = next(r for r in results if r["name"].startswith("MLServer"))
    kserve = next(r for r in results if r["name"].startswith("KServe"))
    empty = by["empty axum handler"]
    lines = [
        "## Inference server: modelship vs MLServer vs KServe",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this project's CI machine kind "
        f"({os.cpu_count()} cores; each server pinned to core {SERVER_CPU}, the load generator oha to core {LOAD_CPU}), "
        "same Iris logistic-regression model, one row per request, v2 JSON over HTTP/1.1 on 127.0.0.1.",
        "",
        "Command: `make bench-server` "
        f"(`bench/bench_server.py --seconds {args.seconds} --connections {args.connections} --rate {args.rate}`).",
        "",
        f"### Closed loop: {args.connections} connections, {args.seconds}s",
        "",
        "| server | req/s | p50 ms | p99 ms | errors | RSS MiB | × MLServer req/s | × KServe req/s | ÷ empty axum req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = r["closed"]
        lines.append(
            f"| {r['name']} | {c['rps']:.0f} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} | {r['rss_mib']:.0f} | "
            f"{c['rps'] / max(mlserver['closed']['rps'], 1e-9):.1f} | {c['rps'] / max(kserve['closed']['rps'], 1e-9):.1f} | "
            f"{empty['closed']['rps'] / max(c['rps'], 1e-9):.2f} |"
        )
    lines += [
        "",
        f"### Open loop: {args.rate} req/s offered, {args.seconds}s (latency corrected for coordinated omission)",
        "",
        "| server | achieved req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        o = r["open"]
        lines.append(f"| {r['name']} | {o['rps']:.0f} | {o['p50_ms']:.2f} | {o['p99_ms']:.2f} | {o['errors']} |")
    lines += [
        "",
        "### In-process model rate (the ceiling), one row per call, one thread",
        "",
        "| runtime | inferences/s |",
        "|---|---:|",
    ]
    for r in rates:
        lines.append(f"| {r['runtime']} | {r.get('inferences_per_second', r.get('error'))} |")
    lines += [
        "",
        "Peers: MLServer 1.7.1 + mlserver-sklearn (the same scikit-learn model as joblib, `parallel_workers: 0`), "
        "KServe 0.21 `kserve.Model` wrapping onnxruntime 1.31.1 on the same ONNX file (one uvicorn worker). "
        "modelship runs its defaults (dynamic batching on, max batch 32, max delay 1ms, waited only under load).",
        "",
    ]
    section = "\n".join(lines)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find("## Inference server: modelship vs MLServer vs KServe")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())

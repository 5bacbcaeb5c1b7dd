"""`make bench-grpc`: modelship's gRPC against MLServer's and KServe's gRPC, an empty tonic
service (the gRPC ceiling, as the empty axum handler is REST's) and modelship's own REST, on
the same Iris model and the same pinning as `make bench-server`; writes the section
"gRPC: modelship vs MLServer vs KServe" of docs/benchmarks.md.

The load generator is ghz (scripts/setup-grpc-tools.sh), one HTTP/2 connection per client
(as oha opens one per client for REST), the request typed (`fp32_contents`), a closed loop
for each concurrency. Every server runs at once, pinned to core 0, ghz (and oha) to core 1;
each point is repeated with the servers interleaved and the tables report medians.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from servers import LOAD_CPU, ROOT, TARGET, Peer, free_port, mlserver_dir, oha, pinned  # noqa: E402

HEADING = "## gRPC: modelship vs MLServer vs KServe"
TOOLS = Path(os.environ.get("MODELSHIP_TOOLS", Path.home() / ".cache/modelship/tools")) / "bin"
PROTO = ROOT / "inference-server/proto/grpc_predict_v2.proto"
CALL = "inference.GRPCInferenceService/ModelInfer"
REQUEST = json.dumps({"model_name": "iris", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                                        "contents": {"fp32_contents": [6.9, 3.1, 5.4, 2.1]}}]})


def ghz(port: int, seconds: float, clients: int) -> dict:
    """One bounded closed-loop run of `clients` workers, each on its own connection."""
    cmd = [str(TOOLS / "ghz"), "--insecure", "--proto", str(PROTO), "--call", CALL, "-d", REQUEST,
           "-c", str(clients), "--connections", str(clients), "-z", f"{seconds}s", "--format", "json",
           f"127.0.0.1:{port}"]
    out = subprocess.run(pinned(LOAD_CPU, cmd), capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"ghz failed ({out.returncode}): {out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    codes = data.get("statusCodeDistribution") or {}
    ok = codes.get("OK", 0)
    # ghz stops at the deadline by cancelling the calls in flight and closing its own
    # connections (one "use of closed network connection" per connection): not server errors.
    ours = ("canceled", "closing", "use of closed network connection")
    kinds = {k: v for k, v in (data.get("errorDistribution") or {}).items()
             if not any(o in k.lower() for o in ours)}
    errors = sum(kinds.values())
    if errors:
        print(f"  errors at {clients} clients on port {port}: {list(kinds.items())[:3]}", flush=True)
    pct = {d["percentage"]: d["latency"] / 1e6 for d in data.get("latencyDistribution") or []}
    return {"rps": ok / seconds, "p50_ms": pct.get(50, 0.0), "p99_ms": pct.get(99, 0.0),
            "errors": errors, "requests": ok + errors}


class GrpcPeer(Peer):
    """A server measured over gRPC: ready once a real ModelInfer call succeeds."""

    def __init__(self, name: str, cmd: list[str], grpc_port: int, env=None, rest_port: int | None = None):
        super().__init__(name, cmd, rest_port or grpc_port, None, cwd=ROOT, env=env)
        self.grpc_port = grpc_port

    def __enter__(self):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="bench-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(pinned("0", self.cmd), stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.cwd, env=self.env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {Path(self.log.name).read_text()[-3000:]}")
            call = subprocess.run([str(TOOLS / "grpcurl"), "-plaintext", "-max-time", "2", "-import-path",
                                   str(PROTO.parent), "-proto", PROTO.name, "-d", REQUEST,
                                   f"127.0.0.1:{self.grpc_port}", CALL], capture_output=True, text=True)
            if call.returncode == 0:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready in 120s: {Path(self.log.name).read_text()[-3000:]}")


def servers(tmp: Path) -> list[GrpcPeer]:
    rest, grpc = free_port(), free_port()
    modelship = GrpcPeer("modelship gRPC", [
        str(TARGET / "release/modelship-server"), "serve", "--model", "builtin://iris", "--model-name", "iris",
        "--runtime", "tract", "--host", "127.0.0.1", "--port", str(rest), "--grpc-port", str(grpc),
        "--log", "warn"], grpc, rest_port=rest)
    ml_dir = mlserver_dir(tmp, free_port())
    ml_grpc = json.loads((ml_dir / "settings.json").read_text())["grpc_port"]
    ks_http, ks_grpc = free_port(), free_port()
    empty = free_port()
    return [
        modelship,
        GrpcPeer("MLServer 1.7.1 gRPC", [str(ROOT / ".venv-mlserver/bin/mlserver"), "start", str(ml_dir)], ml_grpc),
        GrpcPeer("KServe 0.21 gRPC", [str(ROOT / ".venv/bin/python"), str(ROOT / "bench/kserve_server.py"),
                                      str(ks_http), str(ROOT / "models/iris.onnx"), "iris", str(ks_grpc)], ks_grpc),
        GrpcPeer("empty tonic service", [str(TARGET / "release/examples/empty_tonic"), str(empty)], empty),
    ]


def cell(p: dict) -> str:
    text = f"{p['rps']:,.0f} ({p['p50_ms']:.2f} / {p['p99_ms']:.2f})"
    return text + (f", {p['errors']} errors" if p["errors"] else "")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3, help="length of each load run")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each point (medians are reported)")
    ap.add_argument("--clients", default="1,8,64", help="closed-loop concurrencies")
    ap.add_argument("--note", default="", help="a sentence about the machine's state during the run")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    ap.add_argument("--dry", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="modelship-bench-grpc-"))
    started = time.time()
    names: list[str] = []
    runs: dict[str, dict[int, list]] = {}
    with ExitStack() as stack:
        peers = [stack.enter_context(p) for p in servers(tmp)]
        modelship = peers[0]
        rest_url = f"http://127.0.0.1:{modelship.port}/v2/models/iris/infer"
        names = [p.name for p in peers] + ["modelship REST (oha)"]
        runs = {n: {c: [] for c in clients} for n in names}
        for rep in range(args.repeats):
            order = peers[rep % len(peers):] + peers[:rep % len(peers)]
            for c in clients:
                for p in order:
                    runs[p.name][c].append(ghz(p.grpc_port, args.seconds, c))
                runs["modelship REST (oha)"][c].append(oha(rest_url, args.seconds, c))
                line = "  ".join(f"{n}={runs[n][c][-1]['rps']:.0f}" for n in names)
                print(f"[{c} clients, rep {rep + 1}/{args.repeats}] {line}", flush=True)
    med = {n: {c: report.median_point(rs) for c, rs in d.items()} for n, d in runs.items()}
    minutes = (time.time() - started) / 60
    rows = ["| clients | " + " | ".join(f"{n} req/s (p50 / p99 ms)" for n in names) + " |",
            "|---:|" + "---:|" * len(names)]
    for c in clients:
        rows.append(f"| {c} | " + " | ".join(cell(med[n][c]) for n in names) + " |")
    top = clients[-1]
    ms, empty = med["modelship gRPC"][top]["rps"], med["empty tonic service"][top]["rps"]
    peers_best = max(med["MLServer 1.7.1 gRPC"][top]["rps"], med["KServe 0.21 gRPC"][top]["rps"])
    rest = med["modelship REST (oha)"][top]["rps"]
    text = "\n".join([
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this project's machine kind (2 cores; "
        "every server pinned to core 0, the load generator to core 1), the same Iris model as the REST tables, "
        "one row per call, `ModelInfer` with typed `fp32_contents` over h2c on 127.0.0.1; ghz v0.120.0, one "
        f"HTTP/2 connection per client, closed loop. Each point ran {args.repeats} times for {args.seconds:g} s, "
        f"the servers interleaved; the figures are medians. The whole run took {minutes:.0f} min. "
        + args.note,
        "",
        f"Command: `make bench-grpc` (`bench/bench_grpc.py --seconds {args.seconds:g} --repeats {args.repeats} "
        f"--clients {args.clients}`).",
        "",
        f"**At {top} clients**: modelship gRPC {ms:,.0f} calls/s, {ms / max(peers_best, 1):.1f}x the better peer, "
        f"{ms / max(empty, 1):.0%} of the empty tonic service; modelship REST (oha, same process) {rest:,.0f} req/s.",
        "",
        *rows,
        "",
    ])
    print(text)
    if not args.dry:
        report.replace_section(Path(args.out), HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench-grpc`: modelship's gRPC against MLServer's and KServe's gRPC, an empty tonic
service (the gRPC ceiling, as the empty axum handler is REST's), and the same three servers over
REST, on the same Iris model and the same pinning as `make bench-server`; writes the section
"gRPC: modelship vs MLServer vs KServe" of docs/benchmarks.md.

The gRPC load generator is the project's own (`inference-server/examples/grpc_load.rs`: tonic's
client, one thread, one HTTP/2 connection per client, a closed loop, the request typed
`fp32_contents`), because ghz (Go) tops out on one core below what the servers reach: the
empty tonic service is measured with ghz too in the same run (the cross-check column), which
shows ghz's own ceiling. `--client ghz` measures every gRPC column with ghz instead. REST is
oha, one connection per client. Every server runs at once, pinned to core 0, the load generators
to core 1; each point is repeated with the servers interleaved and the tables report medians.
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
GRPC_LOAD = TARGET / "release/examples/grpc_load"
PROTO = ROOT / "inference-server/proto/grpc_predict_v2.proto"
CALL = "inference.GRPCInferenceService/ModelInfer"
REQUEST = json.dumps({"model_name": "iris", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                                        "contents": {"fp32_contents": [6.9, 3.1, 5.4, 2.1]}}]})
WARMUP = 0.5


def grpc_load(port: int, seconds: float, clients: int) -> dict:
    """One bounded closed-loop run of the project's generator: `clients` callers, a connection each."""
    cmd = [str(GRPC_LOAD), "--clients", str(clients), "--seconds", f"{seconds}", "--warmup", f"{WARMUP}",
           f"127.0.0.1:{port}"]
    out = subprocess.run(pinned(LOAD_CPU, cmd), capture_output=True, text=True, timeout=seconds + WARMUP + 60)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"grpc_load failed ({out.returncode}): {out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    if data["errors"]:
        print(f"  errors at {clients} clients on port {port}: {data['errors']}; {out.stderr.strip()[-300:]}",
              flush=True)
    return {"rps": data["rps"], "p50_ms": data["p50_ms"], "p99_ms": data["p99_ms"], "errors": data["errors"],
            "requests": data["calls"]}


def ghz(port: int, seconds: float, clients: int) -> dict:
    """One bounded closed-loop run of ghz: `clients` workers, each on its own connection."""
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
    """modelship, MLServer, KServe (each with its REST port), the empty tonic service (gRPC only)."""
    rest, grpc = free_port(), free_port()
    modelship = GrpcPeer("modelship gRPC", [
        str(TARGET / "release/modelship-server"), "serve", "--model", "builtin://iris", "--model-name", "iris",
        "--runtime", "tract", "--host", "127.0.0.1", "--port", str(rest), "--grpc-port", str(grpc),
        "--log", "warn"], grpc, rest_port=rest)
    ml_http = free_port()
    ml_dir = mlserver_dir(tmp, ml_http)
    ml_grpc = json.loads((ml_dir / "settings.json").read_text())["grpc_port"]
    ks_http, ks_grpc = free_port(), free_port()
    empty = free_port()
    return [
        modelship,
        GrpcPeer("MLServer 1.7.1 gRPC", [str(ROOT / ".venv-mlserver/bin/mlserver"), "start", str(ml_dir)], ml_grpc,
                 rest_port=ml_http),
        GrpcPeer("KServe 0.21 gRPC", [str(ROOT / ".venv/bin/python"), str(ROOT / "bench/kserve_server.py"),
                                      str(ks_http), str(ROOT / "models/iris.onnx"), "iris", str(ks_grpc)], ks_grpc,
                 rest_port=ks_http),
        GrpcPeer("empty tonic service", [str(TARGET / "release/examples/empty_tonic"), str(empty)], empty),
    ]


def cell(p: dict) -> str:
    text = f"{p['rps']:,.0f} ({p['p50_ms']:.2f} / {p['p99_ms']:.2f})"
    return text + (f", {p['errors']} errors" if p["errors"] else "")


def table(names: list[str], clients: list[int], med: dict, unit: str) -> list[str]:
    rows = ["| clients | " + " | ".join(f"{n} {unit} (p50 / p99 ms)" for n in names) + " |",
            "|---:|" + "---:|" * len(names)]
    for c in clients:
        rows.append(f"| {c} | " + " | ".join(cell(med[n][c]) for n in names) + " |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3, help="length of each load run")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each point (medians are reported)")
    ap.add_argument("--clients", default="1,8,64", help="closed-loop concurrencies")
    ap.add_argument("--client", choices=["rust", "ghz"], default="rust",
                    help="the gRPC load generator of the main columns (the other one drives the cross-check)")
    ap.add_argument("--note", default="", help="a sentence about the machine's state during the run")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    ap.add_argument("--dry", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    load, other, other_name = (grpc_load, ghz, "ghz v0.120.0") if args.client == "rust" else \
        (ghz, grpc_load, "grpc_load")
    load_name = "grpc_load (tonic, one thread)" if args.client == "rust" else "ghz v0.120.0"
    tmp = Path(tempfile.mkdtemp(prefix="modelship-bench-grpc-"))
    started = time.time()
    load_before = os.getloadavg()
    with ExitStack() as stack:
        peers = [stack.enter_context(p) for p in servers(tmp)]
        empty = peers[-1]
        check = f"empty tonic service ({other_name})"
        rest_of = {p.name: p.name.replace(" gRPC", " REST") for p in peers if p is not empty}
        grpc_names = [p.name for p in peers] + [check]
        rest_names = list(rest_of.values())
        runs: dict[str, dict[int, list]] = {n: {c: [] for c in clients} for n in grpc_names + rest_names}
        for rep in range(args.repeats):
            order = peers[rep % len(peers):] + peers[:rep % len(peers)]
            for c in clients:
                for p in order:
                    runs[p.name][c].append(load(p.grpc_port, args.seconds, c))
                    if p is empty:
                        runs[check][c].append(other(p.grpc_port, args.seconds, c))
                    else:
                        runs[rest_of[p.name]][c].append(oha(p.url, args.seconds, c))
                line = "  ".join(f"{n}={runs[n][c][-1]['rps']:.0f}" for n in grpc_names + rest_names)
                print(f"[{c} clients, rep {rep + 1}/{args.repeats}] {line}", flush=True)
    load_after = os.getloadavg()
    med = {n: {c: report.median_point(rs) for c, rs in d.items()} for n, d in runs.items()}
    minutes = (time.time() - started) / 60
    ms_g, ml_g, ks_g, empty_g = (p.name for p in peers)
    ms_r, ml_r, ks_r = rest_names

    def margins(c: int) -> dict:
        g = med[ms_g][c]["rps"] / max(med[ml_g][c]["rps"], med[ks_g][c]["rps"], 1)
        r = med[ms_r][c]["rps"] / max(med[ml_r][c]["rps"], med[ks_r][c]["rps"], 1)
        return {"grpc": g, "rest": r, "ceiling": med[ms_g][c]["rps"] / max(med[empty_g][c]["rps"], 1),
                "own_rest": med[ms_g][c]["rps"] / max(med[ms_r][c]["rps"], 1),
                "check": med[empty_g][c]["rps"] / max(med[check][c]["rps"], 1)}

    summary = ["| clients | gRPC margin: modelship / better peer | REST margin: modelship / better peer | "
               "modelship gRPC / empty tonic | modelship gRPC / modelship REST | "
               f"empty tonic: {load_name.split(' ')[0]} / {other_name.split(' ')[0]} |",
               "|---:|---:|---:|---:|---:|---:|"]
    for c in clients:
        m = margins(c)
        summary.append(f"| {c} | {m['grpc']:.1f}x | {m['rest']:.1f}x | {m['ceiling']:.0%} | {m['own_rest']:.0%} | "
                       f"{m['check']:.1f}x |")
    top = clients[-1]
    m = margins(top)
    verdict_margin = "holds" if m["grpc"] >= m["rest"] else "does not hold"
    verdict_ceiling = "holds" if m["ceiling"] >= 0.5 else "does not hold"
    text = "\n".join([
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this project's machine kind (2 cores; "
        "every server pinned to core 0, the load generator to core 1), the same Iris model as the REST tables, "
        "one row per call, `ModelInfer` with typed `fp32_contents` over h2c on 127.0.0.1. gRPC load: "
        f"{load_name}, one HTTP/2 connection per client, closed loop, {WARMUP:g} s of warm-up not counted; "
        f"the cross-check column drives the empty tonic service with {other_name} in the same rounds. REST: oha, "
        f"one connection per client, same servers. Each point ran {args.repeats} times for {args.seconds:g} s, "
        f"the servers interleaved; the figures are medians. The whole run took {minutes:.0f} min; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min). " + args.note,
        "",
        f"Command: `make bench-grpc` (`bench/bench_grpc.py --seconds {args.seconds:g} --repeats {args.repeats} "
        f"--clients {args.clients} --client {args.client}`).",
        "",
        f"**At {top} clients**: modelship gRPC {med[ms_g][top]['rps']:,.0f} calls/s, {m['grpc']:.1f}x the better "
        f"peer over gRPC against {m['rest']:.1f}x over REST in the same run (ahead by at least the REST margin: "
        f"{verdict_margin}); {m['ceiling']:.0%} of the empty tonic service (at least half: {verdict_ceiling}); "
        f"{m['own_rest']:.0%} of modelship's own REST rate.",
        "",
        "### gRPC",
        "",
        *table(grpc_names, clients, med, "calls/s"),
        "",
        "### REST, the same servers",
        "",
        *table(rest_names, clients, med, "req/s"),
        "",
        "### Ratios (of the medians above)",
        "",
        *summary,
        "",
    ])
    print(text)
    if not args.dry:
        report.replace_section(Path(args.out), HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

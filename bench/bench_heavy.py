"""`make bench-heavy`: where compute dominates. Iris costs microseconds a row,
so dynamic batching hardly shows on it; these models cost a real share of a
core per row:

  digits-mlp  a scikit-learn MLPClassifier (64 -> 512 -> 512 -> 10) on the digits
              images, converted with skl2onnx
  digits-cnn  the repo's small digits CNN (models/digits-cnn.onnx), when it exists

Servers, all at once, each pinned to one core, oha on the other: modelship with
batching on (its defaults) and off (`--max-batch-size 1`), under tract and under
ONNX Runtime; MLServer 1.7.1 the usual way (mlserver-sklearn over the joblib
for the MLP; a custom runtime over onnxruntime for the CNN, since MLServer has
no ONNX runtime); KServe 0.21, a `kserve.Model` over onnxruntime. One row per
request, v2 JSON; the sweep of `make bench-server` (closed loop at 1..128 clients,
open loop at fixed rates and at the rate where batching-off stops keeping up),
each point repeated with the servers interleaved; medians of the repeats.
Writes the section "Compute-heavy models" of docs/benchmarks.md and one plot
per model (docs/benchmarks-heavy-<model>.svg).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from servers import ROOT, SERVER_CPU, LOAD_CPU, Peer, free_port, modelship, oha  # noqa: E402

HEADING = "## Compute-heavy models: batching on and off, tract and ONNX Runtime, MLServer, KServe"
SEED = 0


def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def mlp(tmp: Path) -> dict:
    """Trains the MLP, writes its ONNX file (with a card) and its joblib."""
    import joblib
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.neural_network import MLPClassifier

    x, y = digits()
    model = MLPClassifier(hidden_layer_sizes=(512, 512), max_iter=60, random_state=SEED).fit(x, y)
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 64]))],
                          options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    d = tmp / "digits-mlp"
    d.mkdir()
    (d / "digits-mlp.onnx").write_bytes(onx.SerializeToString())
    joblib.dump(model, d / "model.joblib")
    row = x[7].tolist()
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": row}]}
    return {"name": "digits-mlp", "dir": d, "onnx": d / "digits-mlp.onnx", "joblib": d / "model.joblib",
            "body": json.dumps(body), "what": "MLPClassifier 64-512-512-10 (skl2onnx)"}


def cnn(tmp: Path) -> dict | None:
    src = ROOT / "models/digits-cnn.onnx"
    if not src.exists():
        return None
    import onnxruntime as ort

    d = tmp / "digits-cnn"
    d.mkdir()
    shutil.copy(src, d / "digits-cnn.onnx")
    first = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0]
    shape = [1 if not isinstance(s, int) else s for s in first.shape]
    x, _ = digits()
    row = (x[7] / 16.0).tolist() if int(np.prod(shape)) == 64 else [0.0] * int(np.prod(shape))
    body = {"inputs": [{"name": first.name, "shape": shape, "datatype": "FP32", "data": row}]}
    return {"name": "digits-cnn", "dir": d, "onnx": d / "digits-cnn.onnx", "joblib": None,
            "body": json.dumps(body), "what": "the repo's digits CNN (models/digits-cnn.onnx)"}


def mlserver(m: dict, tmp: Path) -> Peer:
    port = free_port()
    repo = tmp / f"mlserver-{m['name']}"
    model_dir = repo / m["name"]
    model_dir.mkdir(parents=True)
    if m["joblib"]:
        shutil.copy(m["joblib"], model_dir / "model.joblib")
        settings = {"name": m["name"], "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib"}}
    else:
        shutil.copy(ROOT / "bench/mlserver_onnx.py", model_dir / "mlserver_onnx.py")
        shutil.copy(m["onnx"], model_dir / "model.onnx")
        settings = {"name": m["name"], "implementation": "mlserver_onnx.OnnxModel",
                    "parameters": {"uri": str(model_dir / "model.onnx")}}
    (model_dir / "model-settings.json").write_text(json.dumps(settings))
    (repo / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": 0, "debug": False,
    }))
    how = "mlserver-sklearn" if m["joblib"] else "custom onnxruntime runtime"
    return Peer(f"MLServer 1.7.1 ({how})", [str(ROOT / ".venv-mlserver/bin/mlserver"), "start", str(repo)],
                port, "/v2/health/ready", cwd=model_dir, model=m["name"], body=m["body"])


def servers_for(m: dict, tmp: Path) -> list[Peer]:
    kw = {"model": str(m["onnx"]), "model_name": m["name"], "body": m["body"]}
    ks_port = free_port()
    return [
        modelship("modelship tract", "tract", **kw),
        modelship("modelship tract (batching off)", "tract", "--max-batch-size", "1", **kw),
        modelship("modelship onnxruntime", "onnxruntime", **kw),
        modelship("modelship onnxruntime (batching off)", "onnxruntime", "--max-batch-size", "1", **kw),
        mlserver(m, tmp),
        Peer("KServe 0.21 (onnxruntime)", [str(ROOT / ".venv/bin/python"), str(ROOT / "bench/kserve_server.py"),
                                          str(ks_port), str(m["onnx"]), m["name"]],
             ks_port, "/v2/health/ready", model=m["name"], body=m["body"]),
    ]


def measure(servers: list[Peer], points: list[int], repeats: int, seconds: float, closed: bool) -> dict:
    runs = {s.name: {p: [] for p in points} for s in servers}
    for rep in range(repeats):
        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
        for p in points:
            for s in order:
                r = oha(s.url, seconds, p, body=s.body) if closed else oha(s.url, seconds, 64, p, body=s.body)
                runs[s.name][p].append(r)
            print(f"[{'closed' if closed else 'open'} {p} rep {rep + 1}/{repeats}] " +
                  "  ".join(f"{s.name}={runs[s.name][p][-1]['rps']:.0f}" for s in servers), flush=True)
    return {n: {p: report.median_point(rs) for p, rs in d.items()} for n, d in runs.items()}


RUNTIMES = ("tract", "onnxruntime")


def per_runtime(points: dict, rt: str) -> dict:
    """One runtime's on/off pair under the names report.py's checks read."""
    return {report.DEFAULT: points[f"modelship {rt}"], report.OFF: points[f"modelship {rt} (batching off)"]}


def closed_verdicts(closed: dict) -> dict[int, str]:
    """Per runtime, at each point: on/off req/s, the sweep's acceptance (at least 95% of off's
    req/s, p99 no worse than off's by more than 10% or 0.1 ms), and whether batching wins."""
    out: dict[int, list[str]] = {}
    for rt in RUNTIMES:
        pair = per_runtime(closed, rt)
        verdicts = report.closed_verdicts(pair)
        for c, v in verdicts.items():
            on, off = pair[report.DEFAULT][c], pair[report.OFF][c]
            ratio = on["rps"] / max(off["rps"], 1e-9)
            wins = "" if c == 1 else (", wins" if ratio > 1.0 else ", does not win")
            out.setdefault(c, []).append(f"{rt}: {ratio:.2f}x, {v}{wins}")
    return {c: "; ".join(v) for c, v in out.items()}


def open_verdicts(opened: dict) -> dict[int, str]:
    out: dict[int, list[str]] = {}
    for rt in RUNTIMES:
        for r, v in report.open_verdicts(per_runtime(opened, rt)).items():
            out.setdefault(r, []).append(f"{rt}: {v}")
    return {r: "; ".join(v) for r, v in out.items()}


def failures(closed: dict, opened: dict) -> list[str]:
    """The points where the acceptance fails or batching does not win above 1 client."""
    bad = []
    for c, v in closed_verdicts(closed).items():
        for part in v.split("; "):
            if ", ok" not in part or "does not win" in part:
                bad.append(f"{c} clients: {part}")
    for r, v in open_verdicts(opened).items():
        for part in v.split("; "):
            if not part.endswith(("ok", "keep up)")):
                bad.append(f"{r:,} req/s offered: {part}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--rates", default="1000,5000", help="open-loop rates (req/s); the rate where tract with "
                    "batching off stops keeping up is added, per model")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    ap.add_argument("--dry", action="store_true", help="print the tables, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="modelship-heavy-"))
    started = time.time()
    load = os.getloadavg()[0]
    sections = []
    for m in [mlp(tmp), cnn(tmp)]:
        if m is None:
            sections.append("The digits CNN (models/digits-cnn.onnx) was not in the tree at this run.\n")
            continue
        with ExitStack() as stack:
            servers = [stack.enter_context(p) for p in servers_for(m, tmp)]
            for s in servers:
                oha(s.url, 1, 8, body=s.body)  # warm-up, not recorded
            closed = measure(servers, clients, args.repeats, args.seconds, closed=True)
            off = closed["modelship tract (batching off)"]
            saturation = int(round(max(p["rps"] for p in off.values()) * 1.05, -3))
            rates = sorted(set([int(r) for r in args.rates.split(",")] + [saturation]))
            opened = measure(servers, rates, args.repeats, args.seconds, closed=False)
            rss = {s.name: s.rss_mib() for s in servers}
        names = list(closed)
        plot = Path(args.out).parent / f"benchmarks-heavy-{m['name']}.svg"
        if not args.dry:
            report.plot(plot, names, closed)
        bad = failures(closed, opened)
        verdict = ("**Every point passes**: batching on reaches at least 95% of batching off's req/s with a "
                   "p99 within 10% or 0.1 ms at every closed-loop point and every open-loop rate below "
                   "saturation, and wins (more req/s) at every concurrency above 1, under both runtimes."
                   if not bad else "**Points that miss**: " + "; ".join(bad) + ".")
        sections.append("\n".join([
            f"### {m['name']}: {m['what']}",
            "",
            verdict,
            "",
            "Closed loop: req/s (p99 ms) by concurrent clients; the last column is batching on against off per "
            "runtime, with the sweep's acceptance.",
            "",
            *report.table("clients", "req/s", names, closed, closed_verdicts(closed), last="batching on vs off"),
            "",
            f"![req/s and p99 against clients, {m['name']}]({plot.name})",
            "",
            "Open loop: achieved req/s (p99 ms) by offered rate (64 connections, latency corrected).",
            "",
            *report.table("offered req/s", "achieved", names, opened, open_verdicts(opened),
                          key="{:,}".format, last="batching on vs off"),
            "",
            "Memory after the run (RSS, MiB): " + ", ".join(f"{n} {v:.0f}" for n, v in rss.items()) + ".",
            "",
        ]))
    load_after = os.getloadavg()[0]
    text = "\n".join([
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({os.cpu_count()} cores; every server pinned "
        f"to core {SERVER_CPU}, oha to core {LOAD_CPU}; load average {load:.1f} at the start, {load_after:.1f} at the "
        f"end). One row per request, v2 JSON over HTTP/1.1 on 127.0.0.1; each point {args.repeats} x "
        f"{args.seconds:g} s, the servers interleaved, medians. The run took {(time.time() - started) / 60:.0f} min. "
        f"Command: `make bench-heavy` (`bench/bench_heavy.py --seconds {args.seconds:g} --repeats {args.repeats} "
        f"--clients {args.clients} --rates {args.rates}`).",
        "",
        "What \"wins\" can mean at 2 closed-loop clients: the policy never holds a batch while the worker would "
        "otherwise idle, unless a request the server has already admitted is on its way. With two clients, while "
        "one client's request runs, the other's waits and then runs alone: the first client's next request is "
        "still on the wire (it sends only after its answer). So batches hold one request at 2 clients whatever "
        "the model costs, and the most batching can do there is tie; waiting for the next request instead would "
        "add a network round trip to every call, which is what the issue's rule (never worse than batching off) "
        "forbids. From 4 clients on, requests meet in the queue and batching wins.",
        "",
        *sections,
    ])
    print(text)
    if not args.dry:
        report.replace_section(Path(args.out), HEADING, text)
        print(f"wrote {args.out}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

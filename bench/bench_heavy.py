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
request, v2 JSON, closed loop at 1, 8 and 64 clients; medians of the repeats.
Writes the section "Compute-heavy models" of docs/benchmarks.md.
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


def measure(servers: list[Peer], clients: list[int], repeats: int, seconds: float) -> dict:
    runs = {s.name: {c: [] for c in clients} for s in servers}
    for rep in range(repeats):
        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
        for c in clients:
            for s in order:
                runs[s.name][c].append(oha(s.url, seconds, c, body=s.body))
            print(f"[{c} clients rep {rep + 1}/{repeats}] " +
                  "  ".join(f"{s.name}={runs[s.name][c][-1]['rps']:.0f}" for s in servers), flush=True)
    return {n: {c: report.median_point(rs) for c, rs in d.items()} for n, d in runs.items()}


def batching_verdicts(closed: dict) -> dict[int, str]:
    """Batching on against off, per runtime, at each point: the last column of the table."""
    out = {}
    for c in next(iter(closed.values())):
        parts = []
        for rt in ("tract", "onnxruntime"):
            on, off = closed[f"modelship {rt}"][c], closed[f"modelship {rt} (batching off)"][c]
            parts.append(f"{rt}: on/off {on['rps'] / max(off['rps'], 1e-9):.2f}x req/s, "
                         f"p99 {on['p99_ms']:.2f} vs {off['p99_ms']:.2f} ms")
        out[c] = "; ".join(parts)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", default="1,8,64")
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
            closed = measure(servers, clients, args.repeats, args.seconds)
            rss = {s.name: s.rss_mib() for s in servers}
        names = list(closed)
        sections.append("\n".join([
            f"### {m['name']}: {m['what']}",
            "",
            *report.table("clients", "req/s", names, closed, batching_verdicts(closed),
                          last="batching on vs off"),
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
        f"Command: `make bench-heavy`.",
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

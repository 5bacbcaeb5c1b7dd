"""`make bench-server`: modelship against MLServer and KServe on the same Iris
model and the same load, in one run on one machine; writes docs/benchmarks.md
and docs/benchmarks-sweep.svg.

The sweep: closed-loop clients 1..128 and open-loop rates, for modelship with
its defaults, with batching off and (when the binary has it) with the old
fixed-wait policy, the peers and an empty axum handler (the HTTP ceiling).
Every server runs at once, pinned to one core, the load generator to the
other; each point is repeated and the servers interleaved (A B C, then B C A, ...),
and the tables report medians, since runs here vary by several percent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from servers import LOAD_CPU, ROOT, SERVER_CPU, TARGET, oha, peers, pinned  # noqa: E402

HEADING = "## Inference server: modelship vs MLServer vs KServe"


def has_old_policy() -> bool:
    out = subprocess.run([str(TARGET / "release/modelship-server"), "serve", "--help"], capture_output=True, text=True)
    return "--batch-wait" in out.stdout


def sweep(servers, points, repeats: int, seconds: float, closed: bool) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, list]] = {s.name: {p: [] for p in points} for s in servers}
    for rep in range(repeats):
        # Each repeat starts with another server, so that no server always runs first.
        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
        for p in points:
            for s in order:
                if closed:
                    r = oha(s.url, seconds, p)
                else:
                    r = oha(s.url, seconds, 64, p)
                runs[s.name][p].append(r)
            line = "  ".join(f"{s.name}={runs[s.name][p][-1]['rps']:.0f}" for s in servers)
            print(f"[{'closed' if closed else 'open'} {p} rep {rep + 1}/{repeats}] {line}", flush=True)
    return {n: {p: report.median_point(rs) for p, rs in d.items()} for n, d in runs.items()}


def runtime_rates() -> list[dict]:
    exe = TARGET / "release/examples/runtime_rate"
    out = subprocess.run(pinned(SERVER_CPU, [str(exe), "iris", "3"]), capture_output=True, text=True, check=True, cwd=ROOT)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3, help="length of each load run")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each point (medians are reported)")
    ap.add_argument("--clients", default="1,2,4,8,16,32,64,128", help="closed-loop concurrencies")
    ap.add_argument("--rates", default="1000,5000,20000", help="open-loop rates (req/s); the rate where "
                    "batching-off stops keeping up is added")
    ap.add_argument("--servers", default="", help="only the servers whose name contains this (a quick check; "
                    "the report then lacks the other columns)")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    ap.add_argument("--plot", default=str(ROOT / "docs/benchmarks-sweep.svg"))
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    rates = [int(r) for r in args.rates.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    started = time.time()
    with ExitStack() as stack:
        chosen = [p for p in peers(tmp, has_old_policy()) if args.servers in p.name]
        servers = [stack.enter_context(p) for p in chosen]
        for s in servers:
            oha(s.url, 2, 32)  # warm-up, not recorded
        closed = sweep(servers, clients, args.repeats, args.seconds, closed=True)
        off = closed.get(report.OFF, {})
        if off:
            saturation = int(round(max(p["rps"] for p in off.values()) * 1.05, -3))
            rates = sorted(set(rates + [saturation]))
        opened = sweep(servers, rates, args.repeats, args.seconds, closed=False)
        rss = {s.name: s.rss_mib() for s in servers}
    names = [s.name for s in servers]
    if args.servers:
        # A partial run: medians on the terminal, docs/benchmarks.md untouched.
        for n in names:
            print(n, {c: round(p["rps"]) for c, p in closed[n].items()}, {r: round(p["p99_ms"], 2) for r, p in opened[n].items()})
        print("\n".join(report.closed_table(names, closed)))
        return 0
    write(Path(args.out), Path(args.plot), names, closed, opened, rss, runtime_rates(), args, time.time() - started)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def write(path, plot_path, names, closed, opened, rss, rates, args, elapsed) -> None:
    report.plot(plot_path, names, closed)
    at = 32 if 32 in closed.get(report.DEFAULT, {}) else max(closed[report.DEFAULT])
    ms = closed[report.DEFAULT][at]["rps"]
    ratio = {n: ms / max(closed[n][at]["rps"], 1e-9) for n in names}
    mlserver = next(n for n in names if n.startswith("MLServer"))
    kserve = next(n for n in names if n.startswith("KServe"))
    empty = "empty axum handler"
    lines = [
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this project's machine kind "
        f"({os.cpu_count()} cores; every server pinned to core {SERVER_CPU}, the load generator oha to core {LOAD_CPU}), "
        "same Iris logistic-regression model, one row per request, v2 JSON over HTTP/1.1 on 127.0.0.1. "
        f"Each point ran {args.repeats} times for {args.seconds:g} s, the servers interleaved; the figures are "
        f"medians. The whole run took {elapsed / 60:.0f} min.",
        "",
        f"Command: `make bench-server` (`bench/bench_server.py --seconds {args.seconds:g} --repeats {args.repeats} "
        f"--clients {args.clients} --rates {args.rates}`).",
        "",
        f"**Headline, at {at} closed-loop clients**: modelship {ms:,.0f} req/s, {ratio[mlserver]:.0f}x MLServer and "
        f"{ratio[kserve]:.0f}x KServe; the empty axum handler (no work at all) makes "
        f"{closed[empty][at]['rps'] / ms:.2f}x modelship's rate.",
        "",
        f"### Closed loop: req/s (p99 ms) by concurrent clients",
        "",
        *report.closed_table(names, closed),
        "",
        f"![req/s and p99 against clients]({plot_path.name})",
        "",
        "The acceptance column checks the batching policy at each point: modelship's default must reach 95% of "
        "the better of batching off and the old policy, with a p99 no worse than batching off's by more than 10% "
        "or 0.1 ms (and at 64 clients at least the old policy's rate).",
        "",
        "### Open loop: achieved req/s (p99 ms) by offered rate (64 connections, latency corrected)",
        "",
        *report.open_table(names, opened),
        "",
        "Memory after the run (RSS, MiB): " + ", ".join(f"{n} {v:.0f}" for n, v in rss.items()) + ".",
        "",
        "### In-process model rate (the ceiling), one row per call, one thread",
        "",
        "| runtime | inferences/s |",
        "|---|---:|",
        *[f"| {r['runtime']} | {r.get('inferences_per_second', r.get('error'))} |" for r in rates],
        "",
        "Servers: modelship's defaults (dynamic batching, max batch 32, waits at most `--max-batch-delay` 1 ms and "
        "only for requests already admitted), `--max-batch-size 1` (batching off), `--batch-wait fixed` (the old "
        "policy: under load, wait the whole delay); MLServer 1.7.1 + mlserver-sklearn (the same scikit-learn model "
        "as joblib, `parallel_workers: 0`); KServe 0.21 `kserve.Model` wrapping onnxruntime on the same ONNX file "
        "(one uvicorn worker).",
        "",
    ]
    report.replace_section(path, HEADING, "\n".join(lines))
    print(f"wrote {path} and {plot_path}")


if __name__ == "__main__":
    sys.exit(main())

"""`make bench-payload-log`: what payload logging costs. The same Iris server and the same
load four ways: logging off; on at 100% to a live CloudEvents receiver in batched mode (the
default `--payload-log-http-batch 100`) and in binary mode (`--payload-log-http-batch 1`, one
event per POST, what a Knative Broker takes); and on to a dead sink (nothing listens: every
send fails, events are dropped). The live receiver is the empty axum handler, which answers
every POST at once whatever its content type (so it takes both modes; the server's own
counters say how many events it sent). Each server pinned to one core, oha on the other (the
live receiver shares the load generator's core); the runs are interleaved and each point
repeated, the table reports medians. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import LOAD_CPU, ROOT, TARGET, Peer, free_port, modelship, oha  # noqa: E402

HEADING = "## Payload logging: off, live sink, dead sink"


def events(peer: Peer) -> tuple[float, float]:
    """(sent, dropped) payload events of `peer` so far, from its /metrics."""
    text = requests.get(f"http://127.0.0.1:{peer.port}/metrics", timeout=5).text
    got = {"sent": 0.0, "dropped": 0.0}
    for line in text.splitlines():
        if line.startswith("modelship_payload_log_events_total{"):
            for result in got:
                if f'result="{result}"' in line:
                    got[result] += float(line.rsplit(" ", 1)[1])
    return got["sent"], got["dropped"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--write", action="store_true", help="replace the section of docs/benchmarks.md")
    args = ap.parse_args()

    sink_port, dead_port = free_port(), free_port()
    live = f"http://127.0.0.1:{sink_port}/v2/models/sink/infer"
    dead = f"http://127.0.0.1:{dead_port}/events"
    names = ["off", "live sink, 100%, batched", "live sink, 100%, binary (batch 1)", "dead sink, 100%"]
    runs = {n: [] for n in names}
    counts = {}
    with ExitStack() as stack:
        receiver = Peer("receiver", [str(TARGET / "release/examples/empty_axum"), str(sink_port)], sink_port, None,
                        model="sink")
        receiver.cmd = ["taskset", "-c", LOAD_CPU, *receiver.cmd]
        stack.enter_context(receiver)
        servers = {
            "off": stack.enter_context(modelship("off", "tract")),
            "live sink, 100%, batched": stack.enter_context(modelship("live", "tract", "--payload-log", live)),
            "live sink, 100%, binary (batch 1)": stack.enter_context(
                modelship("live-binary", "tract", "--payload-log", live, "--payload-log-http-batch", "1")),
            "dead sink, 100%": stack.enter_context(modelship("dead", "tract", "--payload-log", dead)),
        }
        for rep in range(args.repeats):
            k = rep % len(names)
            order = names[k:] + names[:k]
            for n in order:
                pid = servers[n].proc.pid
                cpu, sink_cpu = cpu_seconds(pid), cpu_seconds(receiver.proc.pid)
                r = oha(servers[n].url, args.seconds, args.clients)
                # The server's CPU per answered request: what logging costs it, whatever the
                # load generator (which shares its core with the live receiver) could send.
                r["cpu_us"] = (cpu_seconds(pid) - cpu) / max(r["rps"] * args.seconds, 1) * 1e6
                r["sink_cpu_s"] = cpu_seconds(receiver.proc.pid) - sink_cpu
                runs[n].append(r)
                print(f"  {n}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, server CPU {r['cpu_us']:.1f} us/req, "
                      f"receiver CPU {r['sink_cpu_s']:.2f} s", flush=True)
        for n in names[1:]:
            counts[n] = events(servers[n])
    rows = []
    off = statistics.median(r["rps"] for r in runs["off"])
    cpu_off = statistics.median(r["cpu_us"] for r in runs["off"])
    for n in names:
        rps = statistics.median(r["rps"] for r in runs[n])
        p99 = statistics.median(r["p99_ms"] for r in runs[n])
        errors = sum(r["errors"] for r in runs[n])
        cpu = statistics.median(r["cpu_us"] for r in runs[n])
        sink_cpu = statistics.median(r["sink_cpu_s"] for r in runs[n])
        sent, dropped = counts.get(n, (0, 0))
        rows.append(f"| {n} | {rps:.0f} | {p99:.2f} | {rps / off:.0%} | {cpu:.1f} | {cpu_off / cpu:.0%} | "
                    f"{sink_cpu:.2f} | {errors} | {sent:.0f} | {dropped:.0f} |")
    table = "\n".join([
        HEADING,
        "",
        f"From `make bench-payload-log` (`bench/bench_payload_log.py`): builtin Iris under tract, "
        f"{args.clients} closed-loop clients, {args.seconds:g} s per run, median of {args.repeats} "
        "interleaved runs; the server on one core, oha and the live receiver on the other. "
        "Aim: live sink at least 90% of off, dead sink at least 97%.",
        "",
        "| payload log | req/s | p99 ms | vs off | server CPU µs/req | off's CPU/req ÷ this | receiver CPU s/run "
        "| errors | events sent | events dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])
    print(table)
    if args.write:
        doc = ROOT / "docs/benchmarks.md"
        text = doc.read_text()
        if HEADING in text:
            start = text.index(HEADING)
            rest = text[start + len(HEADING):]
            end = rest.find("\n## ")
            text = text[:start] + table + (rest[end + 1:] if end >= 0 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + table
        doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

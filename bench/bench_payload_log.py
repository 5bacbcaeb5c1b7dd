"""`make bench-payload-log`: what payload logging costs. The same Iris server and the same
load three ways: logging off, on at 100% to a live CloudEvents receiver (the empty axum
handler, which answers every POST at once), and on to a dead sink (nothing listens: every
send fails, events are dropped). Each server pinned to one core, oha on the other (the live
receiver shares the load generator's core); the three are interleaved and each point
repeated, the table reports medians. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import LOAD_CPU, ROOT, TARGET, Peer, free_port, modelship, oha  # noqa: E402

HEADING = "## Payload logging: off, live sink, dead sink"


def dropped(peer: Peer) -> float:
    text = requests.get(f"http://127.0.0.1:{peer.port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("modelship_payload_log_dropped_total{"))


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
    names = ["off", "live sink, 100%", "dead sink, 100%"]
    runs = {n: [] for n in names}
    drops = {}
    with ExitStack() as stack:
        receiver = Peer("receiver", [str(TARGET / "release/examples/empty_axum"), str(sink_port)], sink_port, None,
                        model="sink")
        receiver.cmd = ["taskset", "-c", LOAD_CPU, *receiver.cmd]
        stack.enter_context(receiver)
        servers = {
            "off": stack.enter_context(modelship("off", "tract")),
            "live sink, 100%": stack.enter_context(modelship("live", "tract", "--payload-log", live)),
            "dead sink, 100%": stack.enter_context(modelship("dead", "tract", "--payload-log", dead)),
        }
        for rep in range(args.repeats):
            order = names[rep % 3:] + names[:rep % 3]
            for n in order:
                r = oha(servers[n].url, args.seconds, args.clients)
                runs[n].append(r)
                print(f"  {n}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms", flush=True)
        for n in names[1:]:
            drops[n] = dropped(servers[n])
    rows = []
    off = statistics.median(r["rps"] for r in runs["off"])
    for n in names:
        rps = statistics.median(r["rps"] for r in runs[n])
        p99 = statistics.median(r["p99_ms"] for r in runs[n])
        errors = sum(r["errors"] for r in runs[n])
        rows.append(f"| {n} | {rps:.0f} | {p99:.2f} | {rps / off:.0%} | {errors} | "
                    f"{drops.get(n, 0):.0f} |")
    table = "\n".join([
        HEADING,
        "",
        f"From `make bench-payload-log` (`bench/bench_payload_log.py`): builtin Iris under tract, "
        f"{args.clients} closed-loop clients, {args.seconds:g} s per run, median of {args.repeats} "
        "interleaved runs; the server on one core, oha and the live receiver on the other. "
        "Aim: live sink at least 90% of off, dead sink at least 97%.",
        "",
        "| payload log | req/s | p99 ms | vs off | errors | events dropped |",
        "| --- | --- | --- | --- | --- | --- |",
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

#!/usr/bin/env python3
"""Bounded load for the end-to-end tests: POSTs one Iris inference request
over and over from a few threads and counts every outcome.

    load.py URL --seconds MAX [--threads N] [--stop-file F] [--new-connections]
            [--summary F] [--host NAME] [--requests N] [--api-key KEY]

Stops after MAX seconds or as soon as the stop file exists, then prints (and
writes to --summary) a JSON summary: requests, responses by status code,
responses by the model_version they name, and transport errors by kind.
Nothing is retried and nothing is dropped from the counts: a refused or reset
connection is an error, a 503 is a 503.

--new-connections opens a fresh TCP connection for every request, as a
client behind a Service sees a rolling update: each request is balanced anew
by kube-proxy. Without it each thread keeps one connection alive (more
requests per second, for the autoscaling test).

--host sends that Host header (the URL then names the gateway's address, so
no name is looked up); --requests stops after that many requests in all. The
summary also counts the answers by their x-modelship-variant header.
--api-key sends `Authorization: Bearer KEY` (a ModelDeployment with spec.auth).
"""

import argparse
import collections
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

BODY = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6.0, 2.9, 4.5, 1.5]}]}
).encode()


def worker(url, deadline, stop_file, new_connections, counts, lock, host=None, budget=None, key=None):
    parts = urllib.parse.urlsplit(url)
    conn = None
    local = collections.Counter()
    headers = {"Content-Type": "application/json", **({"Host": host} if host else {}),
               **({"Authorization": "Bearer " + key} if key else {})}
    while time.monotonic() < deadline and not os.path.exists(stop_file or "/nonexistent/stop"):
        if budget is not None and not budget.take():
            break
        try:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
            conn.request("POST", parts.path, body=BODY, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            local["requests"] += 1
            local["status %d" % resp.status] += 1
            local["variant %s" % (resp.getheader("x-modelship-variant") or "-")] += 1
            if resp.status == 200:
                version = json.loads(payload).get("model_version", "")
                local["version %s" % (version or "-")] += 1
            if new_connections or resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            local["requests"] += 1
            local["error %s" % type(e).__name__] += 1
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with lock:
        counts.update(local)


class Budget:
    """The requests left to send, shared by the threads."""

    def __init__(self, n):
        self.left, self.lock = n, threading.Lock()

    def take(self):
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--seconds", type=float, required=True, help="upper bound on the run")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--stop-file")
    p.add_argument("--new-connections", action="store_true")
    p.add_argument("--summary")
    p.add_argument("--host", help="the Host header to send")
    p.add_argument("--requests", type=int, help="stop after this many requests in all")
    p.add_argument("--api-key", help="sent as Authorization: Bearer KEY")
    a = p.parse_args()
    if a.seconds <= 0 or a.seconds > 600:
        p.error("--seconds must be in (0, 600]")
    counts, lock = collections.Counter(), threading.Lock()
    start = time.monotonic()
    deadline = start + a.seconds
    budget = Budget(a.requests) if a.requests else None
    threads = [
        threading.Thread(target=worker, args=(a.url, deadline, a.stop_file, a.new_connections, counts, lock,
                                              a.host, budget, a.api_key))
        for _ in range(a.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    summary = {
        "seconds": round(elapsed, 1),
        "requests": counts["requests"],
        "per_second": round(counts["requests"] / elapsed, 1) if elapsed else 0,
        "status": {k.split(" ", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("status ")},
        "model_version": {k.split(" ", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("version ")},
        "errors": {k.split(" ", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("error ")},
        "variant": {k.split(" ", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("variant ")},
    }
    text = json.dumps(summary)
    print(text)
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

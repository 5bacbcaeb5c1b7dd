"""What the monitoring tests share: a CloudEvents receiver run by the test, reading
/metrics, sending Iris requests."""

import http.server
import json
import os
import re
import threading
import time

import requests

from conftest import FLOWERS, Server


BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def start_iris(*args, env=None):
    """The builtin Iris server under tract with `args`, started with `env` added to the
    environment (restored after the start)."""
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return Server("--model", "builtin://iris", "--runtime", "tract", *args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def unbatch(headers: dict, body: bytes) -> list:
    """The events of one POST as (headers, body) pairs in binary mode's shape: a binary-mode
    POST is one event as it came; a batched-mode POST (a JSON array of structured events) gives
    each event's attributes as `ce-*` keys, `datacontenttype` as `content-type`, `data` as the
    body."""
    if headers.get("content-type") != BATCH_CONTENT_TYPE:
        return [(headers, body)]
    events = []
    for e in json.loads(body):
        attrs = {f"ce-{k}": v for k, v in e.items() if k not in ("data", "datacontenttype")}
        attrs["content-type"] = e["datacontenttype"]
        events.append((attrs, json.dumps(e["data"]).encode()))
    return events


class Receiver:
    """An HTTP CloudEvents receiver on loopback that takes both modes the server sends:
    binary (one event per POST) and batched (`application/cloudevents-batch+json`). Keeps
    each event as (headers, body) in binary mode's shape (see `unbatch`) and each POST's
    content type and event count in `posts`; answers after `delay` seconds with `status`."""

    def __init__(self, delay: float = 0.0, status: int = 200):
        self.events = []
        self.posts = []
        self.lock = threading.Lock()
        self.delay = delay
        self.status = status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = self.rfile.read(n)
                if outer.delay:
                    time.sleep(outer.delay)
                headers = {k.lower(): v for k, v in self.headers.items()}
                events = unbatch(headers, body)
                with outer.lock:
                    outer.events.extend(events)
                    outer.posts.append((headers.get("content-type"), len(events)))
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/events"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def post_log(self):
        """(content type, events) of each POST so far."""
        with self.lock:
            return list(self.posts)

    def wait_for(self, n: int, timeout: float = 20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.snapshot()) >= n:
                return self.snapshot()
            time.sleep(0.05)
        raise AssertionError(f"expected {n} events, got {len(self.snapshot())}")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def metric(server, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    total = 0.0
    found = False
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(4))
            found = True
    return total if found else 0.0


def infer(session, server, rows, model="iris", client_id=None):
    body = {"inputs": [{"name": "input", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}]}
    if client_id is not None:
        body["id"] = client_id
    r = session.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r


def one_flower(i: int):
    return [FLOWERS[i % 3]]


def body_json(event):
    return json.loads(event[1])

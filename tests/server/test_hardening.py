"""Connection-level abuse: the server keeps answering a normal request within a second while
clients hold hundreds of idle connections, send headers a byte at a time, send bodies shorter
than their Content-Length, send huge URLs and header counts, or pipeline requests; and it
closes what they hold open at the timeouts it was given (--header-timeout, --idle-timeout,
--body-timeout)."""

import http.client
import json
import select
import subprocess
import socket
import threading
import time

import pytest
import requests

from conftest import FLOWERS, LABELS, SERVER_BIN, Server

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
BODY_TIMEOUT = 2.0
# What "promptly" means for a normal request here, and the slack allowed on a timeout.
PROMPT = 1.0
SLACK = 1.5

INFER = b'{"id":"%s","inputs":[{"name":"input","shape":[3,4],"datatype":"FP32","data":%s}]}'


@pytest.fixture(scope="module")
def hardened():
    s = Server(
        "--model", "builtin://iris", "--runtime", "tract",
        "--header-timeout", f"{HEADER_TIMEOUT}s",
        "--idle-timeout", f"{IDLE_TIMEOUT}s",
        "--body-timeout", f"{BODY_TIMEOUT}s",
    )
    yield s
    assert s.alive(), "the server died during the tests"
    s.stop()


def answers_promptly(server):
    """A prediction on a fresh connection, correct and within PROMPT seconds."""
    started = time.monotonic()
    r = requests.post(
        f"{server.url}/v2/models/iris/infer",
        json={"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": FLOWERS}]},
        timeout=PROMPT * 5,
    )
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == LABELS
    assert took < PROMPT, f"a normal request took {took:.2f} s"
    return took


def connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_by_server(sock, within: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `within` seconds, reading and
    dropping whatever it sends first."""
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def test_hundreds_of_idle_connections_neither_block_a_request_nor_stay_open(hardened):
    idle = [connect(hardened) for _ in range(300)]
    try:
        opened = time.monotonic()
        for _ in range(5):
            answers_promptly(hardened)
        # Nothing was sent on them: the server closes each one at the idle timeout.
        closed = sum(closed_by_server(s, IDLE_TIMEOUT + SLACK - (time.monotonic() - opened)) for s in idle)
        assert closed == len(idle), f"{len(idle) - closed} of {len(idle)} idle connections still open"
        assert time.monotonic() - opened >= IDLE_TIMEOUT - 0.5
        answers_promptly(hardened)
    finally:
        for s in idle:
            s.close()


def test_headers_sent_a_byte_at_a_time_are_cut_at_the_header_timeout(hardened):
    head = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Slow-%d: %s\r\n" % (i, b"a" * 40) for i in range(40)
    )
    clients = [connect(hardened) for _ in range(30)]
    cut_at = [None] * len(clients)
    started = time.monotonic()

    def drip(i, sock):
        # A byte every 50 ms: never idle, so only the header timeout can end it.
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - started > HEADER_TIMEOUT + 4 * SLACK:
                return
        if closed_by_server(sock, 1.0):
            cut_at[i] = time.monotonic() - started

    threads = [threading.Thread(target=drip, args=(i, s)) for i, s in enumerate(clients)]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            answers_promptly(hardened)
            time.sleep(0.2)
    finally:
        for t in threads:
            t.join()
        for s in clients:
            s.close()
    assert all(c is not None for c in cut_at), f"not cut: {cut_at}"
    assert max(cut_at) < HEADER_TIMEOUT + SLACK, f"cut after {max(cut_at):.2f} s"
    assert min(cut_at) >= HEADER_TIMEOUT - 0.5, f"cut after {min(cut_at):.2f} s"


def test_a_body_shorter_than_its_content_length_gets_408_at_the_body_timeout(hardened):
    sock = connect(hardened)
    try:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"inputs": ['
        )
        started = time.monotonic()
        answers_promptly(hardened)
        sock.settimeout(BODY_TIMEOUT + SLACK)
        response = http.client.HTTPResponse(sock)
        response.begin()
        took = time.monotonic() - started
        assert response.status == 408, response.status
        assert BODY_TIMEOUT - 0.5 <= took < BODY_TIMEOUT + SLACK, took
        assert "error" in response.read().decode()
    finally:
        sock.close()
    answers_promptly(hardened)


def test_a_body_trickled_in_is_cut_at_the_body_timeout_in_all(hardened):
    """A byte every 0.2 s never leaves the body idle for long, but the whole body must arrive
    within --body-timeout of the headers (the limit is total, not between chunks)."""
    sock = connect(hardened)
    try:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        sock.settimeout(0.2)
        answered = b""
        while time.monotonic() - started < BODY_TIMEOUT + SLACK and not answered:
            try:
                sock.sendall(b" ")
                answered = sock.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        took = time.monotonic() - started
        assert answered.startswith(b"HTTP/1.1 408"), answered[:200]
        assert BODY_TIMEOUT - 0.5 <= took < BODY_TIMEOUT + SLACK, took
    finally:
        sock.close()
    answers_promptly(hardened)


@pytest.mark.parametrize("path_bytes", [16 * 1024, 200 * 1024, 2 * 1024 * 1024])
def test_huge_urls_are_refused_and_the_server_goes_on(hardened, path_bytes):
    sock = connect(hardened)
    try:
        try:
            sock.sendall(b"GET /v2/models/" + b"a" * path_bytes + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed while we were still sending: refused too
        status = read_status(sock)
        # A 404 for a long but parseable path; past hyper's buffer, 414/431 or a closed connection.
        assert status in (None, 400, 404, 414, 431), status
        if path_bytes > 1024 * 1024:
            assert status != 404, "a 2 MiB request line was read whole"
    finally:
        sock.close()
    answers_promptly(hardened)


@pytest.mark.parametrize("headers", [150, 5000])
def test_huge_header_counts_are_refused_with_431(hardened, headers):
    sock = connect(hardened)
    try:
        lines = b"".join(b"X-H-%d: v\r\n" % i for i in range(headers))
        try:
            sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert read_status(sock) in (431, None)
    finally:
        sock.close()
    answers_promptly(hardened)


def read_status(sock):
    """The status of the next answer on `sock`, or None when the server closed it instead."""
    sock.settimeout(5)
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
        return None
    return response.status


def read_response(stream):
    """(status, body) of the next HTTP/1.1 answer in `stream` (Content-Length framed)."""
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline().rstrip(b"\r\n")):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, stream.read(length)


def test_pipelined_requests_are_answered_in_order(hardened):
    rows = [FLOWERS[i % 3] for i in range(3)]
    bodies = [INFER % (str(i).encode(), str([rows[(i + j) % 3] for j in range(3)]).encode()) for i in range(8)]
    wire = b"".join(
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(b), b)
        for b in bodies
    )
    wire += b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    sock = connect(hardened)
    try:
        sock.sendall(wire)  # all nine requests in one write
        sock.settimeout(10)
        stream = sock.makefile("rb")
        for i in range(8):
            status, body = read_response(stream)
            assert status == 200, body
            answer = json.loads(body)
            assert answer["id"] == str(i)
            assert answer["outputs"][0]["data"] == [LABELS[(i + j) % 3] for j in range(3)]
        status, _ = read_response(stream)
        assert status == 200
    finally:
        sock.close()
    answers_promptly(hardened)


def test_defaults_are_documented_in_help():
    """The timeouts are flags with environment names, as the docs say."""
    out = subprocess.run([SERVER_BIN, "serve", "--help"], capture_output=True, text=True, check=True).stdout
    for flag, env, default in [
        ("--header-timeout", "MODELSHIP_HEADER_TIMEOUT", "30s"),
        ("--idle-timeout", "MODELSHIP_IDLE_TIMEOUT", "120s"),
        ("--max-connections", "MODELSHIP_MAX_CONNECTIONS", "10000"),
    ]:
        assert flag in out and env in out and f"[default: {default}]" in out, flag


def test_the_connection_cap_closes_extra_connections_and_the_server_recovers():
    s = Server("--model", "builtin://iris", "--runtime", "tract", "--max-connections", "20", "--idle-timeout", "60s")
    try:
        time.sleep(0.5)  # the readiness probes' connections are closed by now
        held = [connect(s) for _ in range(30)]
        # The first 20 are served; each one past the cap is closed at once, unanswered.
        time.sleep(0.5)
        readable, _, _ = select.select(held, [], [], 0)
        closed = sorted(i for i, h in enumerate(held) if h in readable and closed_by_server(h, 0.1))
        assert closed == list(range(20, 30)), closed
        for h in held:
            h.close()
        time.sleep(0.3)
        answers_promptly(s)
    finally:
        assert s.alive()
        s.stop()

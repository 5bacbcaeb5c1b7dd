"""Starts the real modelship-server binary for the tests in this folder."""

import os
import socket
import subprocess
import time

import pytest
import requests

SERVER_BIN = os.environ.get("MODELSHIP_SERVER_BIN", "")
# Servers started without --grpc-port leave gRPC off, so they never fight over 8081.
os.environ.setdefault("MODELSHIP_GRPC_PORT", "0")

# The three reference flowers and their classes: setosa, versicolor, virginica.
FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]
LABELS = [0, 1, 2]

# Values no log line may show (API keys, S3 credentials, presigned URLs' signatures):
# tests/secrets.txt, the list scripts/check_no_secrets.sh reads for the shell suites too.
# Checked over every server log of the session at its end.
KNOWN_SECRETS = [
    line.strip()
    for line in open(os.path.join(os.path.dirname(__file__), "..", "secrets.txt"))
    if line.strip() and not line.startswith("#")
]
SERVER_LOGS: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args: str):
        if not SERVER_BIN or not os.path.exists(SERVER_BIN):
            raise RuntimeError(f"MODELSHIP_SERVER_BIN={SERVER_BIN!r} is not a built binary (run via `make test-server`)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host_port = f"127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.log = open(f"/tmp/modelship-server-{self.port}.log", "w")
        SERVER_LOGS.append(self.log.name)
        self.proc = subprocess.Popen(
            [SERVER_BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--grpc-port", str(self.grpc_port), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {open(self.log.name).read()}")
            try:
                if requests.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready in 60s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server():
    s = Server("--model", "builtin://iris", "--runtime", "tract")
    yield s
    assert s.alive(), "the server died during the tests"
    s.stop()


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_server_log():
    """After the whole suite: no server log shows a known secret."""
    yield
    leaks = []
    for path in SERVER_LOGS:
        try:
            text = open(path, errors="replace").read()
        except FileNotFoundError:
            continue
        leaks += [f"{path}: {secret!r}" for secret in KNOWN_SECRETS if secret in text]
    assert not leaks, f"secrets in server logs: {leaks}"

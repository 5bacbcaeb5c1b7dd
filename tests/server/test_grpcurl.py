"""grpcurl (built by scripts/setup-grpc-tools.sh) lists, describes and calls the service through
server reflection alone, with no proto file."""

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(os.environ.get("MODELSHIP_TOOLS", Path.home() / ".cache/modelship/tools"))
GRPCURL = TOOLS / "bin/grpcurl"

pytestmark = pytest.mark.skipif(
    not GRPCURL.exists(), reason=f"{GRPCURL} is not built (run scripts/setup-grpc-tools.sh)"
)


def grpcurl(server, *verb, flags=()):
    """`grpcurl -plaintext FLAGS TARGET VERB...`; returns its output."""
    done = subprocess.run([str(GRPCURL), "-plaintext", *flags, server.grpc_target, *verb],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_list_and_describe(server):
    services = grpcurl(server, "list").split()
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= set(services)
    methods = grpcurl(server, "list", "inference.GRPCInferenceService").split()
    assert "inference.GRPCInferenceService.ModelInfer" in methods
    described = grpcurl(server, "describe", "inference.InferTensorContents")
    assert "repeated float fp32_contents = 6;" in described


def test_call_infer_and_health(server):
    body = {"model_name": "iris", "id": "grpcurl-1", "inputs": [
        {"name": "input", "datatype": "FP32", "shape": [1, 4], "contents": {"fp32_contents": [6.9, 3.1, 5.4, 2.1]}}]}
    out = json.loads(grpcurl(server, "inference.GRPCInferenceService/ModelInfer", flags=("-d", json.dumps(body))))
    assert out["id"] == "grpcurl-1"
    assert [o["name"] for o in out["outputs"]] == ["label", "probabilities"]
    assert base64.b64decode(out["rawOutputContents"][0]) == (2).to_bytes(8, "little")
    health = json.loads(grpcurl(server, "grpc.health.v1.Health/Check"))
    assert health == {"status": "SERVING"}

"""The KServe peer of `make bench-server`: a `kserve.Model` that runs the same
ONNX file with onnxruntime, served by KServe's own ModelServer (v1 + v2 REST; with GRPC_PORT also v2 gRPC).
The model's first input takes the request's first tensor; every output is returned.

Usage: python bench/kserve_server.py PORT MODEL.onnx [NAME [GRPC_PORT]]   (NAME defaults to iris)
"""

import sys
import uuid

import grpc.aio._server
import numpy as np
import onnxruntime as ort
import uvicorn

import kserve
from kserve import InferOutput, InferRequest, InferResponse

# KServe's REST server hard-codes host 0.0.0.0; this benchmark may listen on
# loopback only, so every uvicorn.Config it makes is bound to 127.0.0.1.
_config_init = uvicorn.Config.__init__


def _loopback_config(self, *args, **kwargs):
    kwargs["host"] = "127.0.0.1"
    _config_init(self, *args, **kwargs)


uvicorn.Config.__init__ = _loopback_config

# Its gRPC server listens on [::] too: bound to loopback the same way.
_add_insecure_port = grpc.aio._server.Server.add_insecure_port


def _loopback_port(self, address):
    return _add_insecure_port(self, address.replace("[::]:", "127.0.0.1:"))


grpc.aio._server.Server.add_insecure_port = _loopback_port


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.session = None

    def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        first = self.session.get_inputs()[0]
        x = payload.inputs[0].as_numpy().astype(np.float32).reshape(
            [-1 if not isinstance(d, int) else d for d in first.shape])
        names = [o.name for o in self.session.get_outputs()]
        results = self.session.run(names, {first.name: x})
        outputs = []
        for name, value in zip(names, results):
            datatype = "INT64" if value.dtype == np.int64 else "FP32"
            outputs.append(InferOutput(name=name, shape=list(value.shape), datatype=datatype,
                                       data=value.flatten().tolist()))
        # The v2 protocol makes the request id optional; the response always has one.
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or str(uuid.uuid4()))


if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    model = OnnxModel(sys.argv[3] if len(sys.argv) > 3 else "iris", path)
    model.load()
    grpc_port = int(sys.argv[4]) if len(sys.argv) > 4 else None
    kserve.ModelServer(http_port=port, grpc_port=grpc_port or 8081, enable_grpc=grpc_port is not None,
                       workers=1).start([model])

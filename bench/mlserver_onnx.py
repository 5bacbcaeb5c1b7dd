"""An MLServer custom runtime over onnxruntime, for the compute-heavy benchmark
(bench/bench_heavy.py). MLServer ships no ONNX runtime; its docs show custom
runtimes as an `MLModel` subclass with `load` and `predict`, which this is.

The model's first input takes the request's first tensor; every output is returned.
MLServer imports it by the name in model-settings.json ("mlserver_onnx.OnnxModel"),
from the model's folder, where bench_heavy.py copies this file.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, opts,
                                             providers=["CPUExecutionProvider"])
        first = self._session.get_inputs()[0]
        self._input = first.name
        self._shape = [-1 if not isinstance(d, int) else d for d in first.shape]
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32).reshape(self._shape)
        results = self._session.run(self._outputs, {self._input: x})
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in zip(self._outputs, results)],
        )

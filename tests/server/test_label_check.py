"""A classifier that a runtime would misread is refused at load, with the reason.

Two ways to get one: a binary random forest from skl2onnx, which tract 0.23 would answer
with label 0 for every row (refused by name under tract, served right by ONNX Runtime); and a
model whose label output is the least probable class, which the load-time check refuses under
both runtimes.
"""

import glob
import os
import subprocess

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from conftest import SERVER_BIN, Server

ORT_LIBRARY = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[0]


def refusal(model_path, runtime: str) -> str:
    """Starts the server on the model and returns its error line; fails if it serves."""
    args = [SERVER_BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--grpc-port", "0",
            "--model", str(model_path), "--runtime", runtime]
    if runtime == "onnxruntime":
        args += ["--ort-library", ORT_LIBRARY]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server served the model under {runtime} instead of refusing it")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("modelship-server: ")]
    assert lines, done.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def binary_forest(tmp_path_factory):
    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, y)
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 30]))],
                          target_opset={"": 17, "ai.onnx.ml": 3}, options={id(model): {"zipmap": False}})
    path = tmp_path_factory.mktemp("forest") / "forest.onnx"
    onnx.save(onx, path)
    return path, model, x


def test_tract_refuses_a_binary_forest_it_would_answer_wrong(binary_forest):
    path, _, _ = binary_forest
    line = refusal(path, "tract")
    assert "tract cannot run operator TreeEnsembleClassifier (a binary classifier" in line, line
    assert "label 0 for every row" in line, line
    assert "--runtime onnxruntime" in line, line


def test_onnx_runtime_serves_the_same_forest_with_the_right_labels(binary_forest):
    path, model, x = binary_forest
    server = Server("--model", str(path), "--runtime", "onnxruntime", "--ort-library", ORT_LIBRARY)
    try:
        rows = x[::20]
        body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                            "data": rows.reshape(-1).tolist()}]}
        import requests

        r = requests.post(f"{server.url}/v2/models/forest/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        labels = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]
        assert labels == model.predict(rows).tolist()
        assert len(set(labels)) == 2, "the rows cover both classes"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def least_probable(tmp_path_factory):
    """probabilities = softmax(input); label = the index of the LEAST probable class."""
    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["input"], ["probabilities"], axis=1),
            helper.make_node("ArgMin", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "least_probable",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("least") / "least.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("runtime", ["tract", "onnxruntime"])
def test_a_label_that_is_not_the_most_probable_class_is_refused(least_probable, runtime):
    line = refusal(least_probable, runtime)
    assert "label output 'label' disagrees with its probabilities output 'probabilities'" in line, line
    assert "the model is not served" in line, line

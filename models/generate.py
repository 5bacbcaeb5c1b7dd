#!/usr/bin/env python3
"""Trains the demo models with scikit-learn and converts them to ONNX with skl2onnx.

Writes, next to this script (or into --out):
  <stem>.onnx            the model
  <stem>.card.json       human-facing facts (title, feature names, class labels, example row, for
                         the digits the `image` field that gives the web page a drawing pad) and
                         the training baseline (per-feature bins and shares, class prior) for drift
  reference/<stem>.json  a fixed sample of input rows with scikit-learn's own predictions,
                         which the Rust tests use to check that tract and ONNX Runtime agree

Everything is deterministic: fixed seeds, bundled datasets (no download), pinned versions
(tests/requirements.txt). Before writing, each converted model is run with onnxruntime on the
reference rows and must reproduce scikit-learn's predictions.

  python models/generate.py           regenerate the committed files
  python models/generate.py --check   regenerate into a temporary directory and verify that the
                                      committed files still predict what the regenerated ones do
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
import skl2onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

SEED = 0
# ai.onnx 17 and ai.onnx.ml 3: the classic TreeEnsemble*/LinearClassifier operators, which
# both tract (for the ones it has) and ONNX Runtime understand.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PROBABILITY_TOLERANCE = 1e-5
# Regression outputs are compared relatively: |got - want| <= tol * max(1, |want|).
REGRESSION_TOLERANCE = 1e-4

HERE = Path(__file__).resolve().parent

IRIS_FEATURES = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
# The rows the acceptance test sends: one of each species.
IRIS_EXTRA_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]

DIABETES_FEATURES = [
    "age",
    "sex",
    "bmi (body mass index)",
    "bp (average blood pressure)",
    "s1 (tc, total serum cholesterol)",
    "s2 (ldl, low-density lipoproteins)",
    "s3 (hdl, high-density lipoproteins)",
    "s4 (tch, total cholesterol / HDL)",
    "s5 (ltg, log of serum triglycerides)",
    "s6 (glu, blood sugar level)",
]


@dataclass
class DemoModel:
    stem: str
    kind: str  # "classifier" or "regressor"
    # fitted model, its training rows, and facts the card's description is formatted with
    build: Callable[[], tuple[object, np.ndarray, dict]]
    card: dict
    sample_every: int
    extra_rows: list[list[float]]


def iris_logistic_regression():
    data = load_iris()
    # Newton-Cholesky to a tight tolerance reaches the optimum itself, so the
    # weights (and the check below) do not depend on the CPU's BLAS kernels;
    # lbfgs at its default tolerance stops wherever the arithmetic leads it.
    model = LogisticRegression(solver="newton-cholesky", tol=1e-10, max_iter=1000, random_state=SEED)
    model.fit(data.data, data.target)
    return model, data.data, {}


def iris_random_forest():
    data = load_iris()
    model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=SEED)
    model.fit(data.data, data.target)
    return model, data.data, {}


def diabetes_gradient_boosting():
    data = load_diabetes()
    model = GradientBoostingRegressor(
        n_estimators=50, max_depth=3, learning_rate=0.1, random_state=SEED
    )
    model.fit(data.data, data.target)
    return model, data.data, {}


def digits_logistic_regression():
    """scikit-learn's 8x8 digits (pixel values 0..16, ink high): trained on a stratified three
    quarters, the held-out quarter's accuracy goes into the card. Newton-Cholesky to a tight
    tolerance for the same reason as Iris's."""
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=SEED, stratify=data.target
    )
    model = LogisticRegression(solver="newton-cholesky", C=0.1, tol=1e-10, max_iter=1000)
    model.fit(x_train, y_train)
    accuracy = model.score(x_test.astype(np.float32), y_test)
    return model, x_train, {"accuracy": f"{accuracy:.3f}", "test_rows": len(x_test)}


MODELS = [
    DemoModel(
        stem="iris",
        kind="classifier",
        build=iris_logistic_regression,
        card={
            "title": "Iris species (logistic regression)",
            "description": "Predicts the species of an iris flower from four measurements. "
            "scikit-learn LogisticRegression trained on the Iris data set, converted with skl2onnx.",
            "feature_names": IRIS_FEATURES,
            "class_labels": IRIS_CLASSES,
            "example": [6.0, 2.9, 4.5, 1.5],
        },
        sample_every=5,
        extra_rows=IRIS_EXTRA_ROWS,
    ),
    DemoModel(
        stem="iris-rf",
        kind="classifier",
        build=iris_random_forest,
        card={
            "title": "Iris species (random forest)",
            "description": "Predicts the species of an iris flower from four measurements. "
            "scikit-learn RandomForestClassifier (10 trees, depth 5) trained on the Iris data set, "
            "converted with skl2onnx.",
            "feature_names": IRIS_FEATURES,
            "class_labels": IRIS_CLASSES,
            "example": [6.0, 2.9, 4.5, 1.5],
        },
        sample_every=5,
        extra_rows=IRIS_EXTRA_ROWS,
    ),
    DemoModel(
        stem="diabetes",
        kind="regressor",
        build=diabetes_gradient_boosting,
        card={
            "title": "Diabetes progression (gradient boosting)",
            "description": "Predicts a quantitative measure of diabetes progression one year after "
            "baseline from ten baseline variables, each mean-centred and scaled as in scikit-learn's "
            "bundled diabetes data set. scikit-learn GradientBoostingRegressor (50 trees, depth 3), "
            "converted with skl2onnx.",
            "feature_names": DIABETES_FEATURES,
            "example": None,  # filled with the first row of the data set
        },
        sample_every=15,
        extra_rows=[],
    ),
    DemoModel(
        stem="digits",
        kind="classifier",
        build=digits_logistic_regression,
        card={
            "title": "Handwritten digits (logistic regression)",
            "description": "Reads a handwritten digit from an 8x8 greyscale image flattened to 64 "
            "numbers, each 0 (no ink) to 16 (full ink), as in scikit-learn's digits data set. "
            "scikit-learn LogisticRegression trained on three quarters of that data set, converted "
            "with skl2onnx; accuracy {accuracy} on the other {test_rows} images.",
            "feature_names": [f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
            "class_labels": [str(d) for d in range(10)],
            "example": None,  # filled with the first training row
            "image": {"height": 8, "width": 8, "background": 0.0, "ink": 16.0},
        },
        sample_every=30,
        extra_rows=[],
    ),
]


def convert(demo: DemoModel, model, n_features: int) -> onnx.ModelProto:
    """skl2onnx conversion with the names the server documents: input `input`, outputs
    `label` + `probabilities` (classifiers) or `predictions` (regressors)."""
    initial_types = [("input", FloatTensorType([None, n_features]))]
    if demo.kind == "classifier":
        n_classes = len(model.classes_)
        final_types = [
            ("label", Int64TensorType([None])),
            ("probabilities", FloatTensorType([None, n_classes])),
        ]
        options = {id(model): {"zipmap": False}}
    else:
        final_types = [("predictions", FloatTensorType([None, 1]))]
        options = None
    onx = convert_sklearn(
        model,
        name=demo.stem,
        initial_types=initial_types,
        final_types=final_types,
        options=options,
        target_opset=TARGET_OPSET,
    )
    onx.doc_string = demo.card["title"]
    onx.model_version = 1
    # skl2onnx collects the opsets in a set: sort them so the bytes do not depend on
    # Python's hash seed.
    opsets = sorted(onx.opset_import, key=lambda o: o.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    onnx.checker.check_model(onx)
    return onx


def baseline(demo: DemoModel, model, rows: np.ndarray, feature_names: list[str]) -> dict:
    """The training sample's distribution, for the server's drift figures (docs/monitoring.md):
    per feature the deciles as bin edges (repeated ones once) and the share of rows in each bin,
    a value x being in bin "number of edges <= x"; the class prior of a classifier. The shares are
    counted on the float32 values the model (and the server) see."""
    x = rows.astype(np.float32).astype(np.float64)
    features = []
    for j, name in enumerate(feature_names):
        edges = np.unique(np.round(np.quantile(x[:, j], np.linspace(0.1, 0.9, 9)), 6))
        bins = np.searchsorted(edges, x[:, j], side="right")
        counts = np.bincount(bins, minlength=len(edges) + 1)
        features.append(
            {
                "name": name,
                "edges": [float(e) for e in edges],
                "proportions": [round(float(c) / len(x), 6) for c in counts],
            }
        )
    out = {"features": features, "rows": int(len(x))}
    if demo.kind == "classifier":
        predicted = model.predict(rows.astype(np.float32))
        prior = np.bincount(predicted, minlength=len(model.classes_)) / len(x)
        out["classes"] = [round(float(p), 6) for p in prior]
    return out


def reference_rows(demo: DemoModel, rows: np.ndarray) -> np.ndarray:
    sample = rows[:: demo.sample_every].tolist() + demo.extra_rows
    return np.asarray(sample, dtype=np.float64)


def sklearn_predictions(demo: DemoModel, model, x: np.ndarray) -> dict:
    # The ONNX model computes in float32: give scikit-learn the same float32 inputs.
    x32 = x.astype(np.float32)
    if demo.kind == "classifier":
        return {
            "label": {
                "datatype": "INT64",
                "shape": [len(x)],
                "data": [int(v) for v in model.predict(x32)],
            },
            "probabilities": {
                "datatype": "FP32",
                "shape": [len(x), len(model.classes_)],
                "data": [float(v) for v in model.predict_proba(x32).ravel()],
                "tolerance": PROBABILITY_TOLERANCE,
            },
        }
    return {
        "predictions": {
            "datatype": "FP32",
            "shape": [len(x), 1],
            "data": [float(v) for v in model.predict(x32).ravel()],
            "relative_tolerance": REGRESSION_TOLERANCE,
        }
    }


def run_onnxruntime(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {"input": x.astype(np.float32)})
    return dict(zip(names, values))


def compare(reference: dict, got: dict[str, np.ndarray], what: str) -> list[str]:
    """Differences between reference outputs (JSON) and onnxruntime outputs."""
    problems = []
    for name, want in reference["outputs"].items():
        if name not in got:
            problems.append(f"{what}: output {name!r} missing (has {sorted(got)})")
            continue
        actual = np.asarray(got[name])
        expected = np.asarray(want["data"]).reshape(want["shape"])
        if list(actual.shape) != want["shape"]:
            problems.append(f"{what}: {name} shape {list(actual.shape)} != {want['shape']}")
            continue
        if "tolerance" in want:
            diff = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
            if diff > want["tolerance"]:
                problems.append(f"{what}: {name} differs by {diff:g} > {want['tolerance']:g}")
        elif "relative_tolerance" in want:
            scale = np.maximum(1.0, np.abs(expected))
            diff = float(np.max(np.abs(actual - expected) / scale)) if actual.size else 0.0
            if diff > want["relative_tolerance"]:
                problems.append(
                    f"{what}: {name} differs by {diff:g} (relative) > {want['relative_tolerance']:g}"
                )
        elif not np.array_equal(actual, expected):
            bad = int(np.sum(actual != expected))
            problems.append(f"{what}: {name} differs in {bad} of {expected.size} elements")
    return problems


def check_interface(path: Path, demo: DemoModel, n_features: int) -> list[str]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_in = [(i.name, i.type, i.shape) for i in sess.get_inputs()]
    got_out = [(o.name, o.type) for o in sess.get_outputs()]
    want_in = [("input", "tensor(float)", [None, n_features])]
    if demo.kind == "classifier":
        want_out = [("label", "tensor(int64)"), ("probabilities", "tensor(float)")]
    else:
        want_out = [("predictions", "tensor(float)")]
    # onnxruntime reports a dynamic dimension as None or as its symbolic name.
    got_in = [(n, t, [d if isinstance(d, int) else None for d in s]) for n, t, s in got_in]
    problems = []
    if got_in != want_in:
        problems.append(f"{path.name}: inputs {got_in} != {want_in}")
    if got_out != want_out:
        problems.append(f"{path.name}: outputs {got_out} != {want_out}")
    return problems


def write_json(path: Path, value) -> None:
    """Indented JSON with each list of numbers on one line, so diffs stay readable."""
    text = json.dumps(value, indent=1)
    text = re.sub(
        r"\[\s*([-+0-9.eE]+(?:,\s*[-+0-9.eE]+)*)\s*\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )
    path.write_text(text + "\n")


def generate(out: Path) -> None:
    (out / "reference").mkdir(parents=True, exist_ok=True)
    for demo in MODELS:
        model, rows, facts = demo.build()
        n_features = rows.shape[1]
        onx = convert(demo, model, n_features)
        onnx_path = out / f"{demo.stem}.onnx"
        onnx_path.write_bytes(onx.SerializeToString())

        card = dict(demo.card)
        card["description"] = card["description"].format(**facts)
        if card.get("example") is None:
            card["example"] = [round(float(v), 6) for v in rows[0]]
        card["baseline"] = baseline(demo, model, rows, card["feature_names"])
        write_json(out / f"{demo.stem}.card.json", card)

        x = reference_rows(demo, rows)
        reference = {
            "model": f"{demo.stem}.onnx",
            "generated_by": f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}",
            "input": {
                "name": "input",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": [float(v) for v in x.ravel()],
            },
            "outputs": sklearn_predictions(demo, model, x),
        }
        problems = check_interface(onnx_path, demo, n_features)
        problems += compare(reference, run_onnxruntime(onnx_path, x), f"{demo.stem} (onnxruntime)")
        if problems:
            sys.exit("conversion does not reproduce scikit-learn:\n  " + "\n  ".join(problems))
        write_json(out / "reference" / f"{demo.stem}.json", reference)
        ops = sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onx.graph.node})
        print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes; operators {', '.join(ops)})")


def check(committed: Path) -> int:
    """Regenerates into a temporary directory and checks that the committed files predict
    what the regenerated models predict (and what scikit-learn predicts)."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        for demo in MODELS:
            stem = demo.stem
            for rel in [f"{stem}.onnx", f"{stem}.card.json", f"reference/{stem}.json"]:
                if not (committed / rel).is_file():
                    problems.append(f"missing committed file models/{rel}")
            if problems:
                continue
            fresh_ref = json.loads((fresh / "reference" / f"{stem}.json").read_text())
            committed_ref = json.loads((committed / "reference" / f"{stem}.json").read_text())
            if fresh_ref["input"] != committed_ref["input"]:
                problems.append(f"reference/{stem}.json: input rows differ from a fresh run")
            x = np.asarray(fresh_ref["input"]["data"]).reshape(fresh_ref["input"]["shape"])
            got = run_onnxruntime(committed / f"{stem}.onnx", x)
            problems += compare(fresh_ref, got, f"committed {stem}.onnx vs fresh scikit-learn")
            problems += compare(committed_ref, got, f"committed {stem}.onnx vs committed reference")
            n_features = x.shape[1]
            problems += check_interface(committed / f"{stem}.onnx", demo, n_features)
            if (fresh / f"{stem}.card.json").read_text() != (
                committed / f"{stem}.card.json"
            ).read_text():
                problems.append(f"{stem}.card.json differs from a fresh run")
            if (fresh / f"{stem}.onnx").read_bytes() != (committed / f"{stem}.onnx").read_bytes():
                # Not an error: predictions are what matter, and protobuf bytes may differ
                # across library builds. Said so that a changed converter is noticed.
                print(f"note: {stem}.onnx bytes differ from a fresh run (predictions checked)")
    if problems:
        print("models/ check FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        print("regenerate with: .venv/bin/python models/generate.py", file=sys.stderr)
        return 1
    print(f"models/ check passed: {len(MODELS)} models predict as scikit-learn does")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write (default: models/)")
    parser.add_argument("--check", action="store_true", help="verify the committed files instead")
    args = parser.parse_args()
    np.random.seed(SEED)
    if args.check:
        return check(args.out)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

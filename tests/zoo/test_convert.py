"""modelship-convert: the command line, the card and its baseline, the refusals."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import onnx
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.kernel_ridge import KernelRidge

from modelship_convert import ConversionError, Disagreement, convert, write_converted, write_model
from modelship_convert.card import feature_baseline
from modelship_convert.verify import run_onnx

IRIS_NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def iris_csv(path: Path) -> None:
    data = load_iris()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(IRIS_NAMES + ["species"])
        for row, target in zip(data.data, data.target):
            w.writerow([*row, target])


def test_the_command_line_writes_the_model_and_its_card(tmp_path):
    data = load_iris()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(data.data, data.target)
    joblib.dump(model, tmp_path / "model.joblib")
    iris_csv(tmp_path / "train.csv")
    out = tmp_path / "iris"
    done = subprocess.run(
        [Path(sys.executable).with_name("modelship-convert"), str(tmp_path / "model.joblib"),
         "--sample", str(tmp_path / "train.csv"), "--label-column", "species",
         "--class-labels", "setosa,versicolor,virginica", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "agrees with the original on 150 rows" in done.stdout
    card = json.loads((out / "model.card.json").read_text())
    assert card["feature_names"] == IRIS_NAMES
    assert card["class_labels"] == ["setosa", "versicolor", "virginica"]
    assert card["example"] == pytest.approx(list(data.data[0]), abs=1e-6)
    assert "RandomForestClassifier" in card["title"]
    baseline = card["baseline"]
    assert baseline["rows"] == 150
    # The true classes of the sample: 50 of each.
    assert baseline["classes"] == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert [f["name"] for f in baseline["features"]] == IRIS_NAMES
    # The ONNX file answers as the forest does, with the opsets both runtimes run.
    onx = onnx.load(out / "model.onnx")
    # (a maximum: skl2onnx writes the lowest ai.onnx.ml version the model needs)
    assert {o.domain: o.version for o in onx.opset_import}["ai.onnx.ml"] <= 3
    got = run_onnx(onx, data.data)
    np.testing.assert_array_equal(got["label"], model.predict(data.data))


def test_the_baseline_has_decile_edges_and_proportions_summing_to_one():
    column = np.arange(100, dtype=float)  # 0..99
    b = feature_baseline("x", column)
    assert b["edges"] == pytest.approx(list(np.quantile(column, np.linspace(0.1, 0.9, 9))))
    assert len(b["proportions"]) == len(b["edges"]) + 1
    assert sum(b["proportions"]) == pytest.approx(1.0)
    # A value x is in bin "number of edges <= x": 0..9 below the first edge (9.9), ...
    assert b["proportions"][0] == pytest.approx(0.10)
    assert b["proportions"][-1] == pytest.approx(0.10)


def test_a_constant_column_has_one_edge_and_everything_at_or_above_it():
    b = feature_baseline("flag", np.ones(20))
    assert b["edges"] == [1.0]
    assert b["proportions"] == [0.0, 1.0]


def test_an_estimator_without_a_converter_is_named(tmp_path):
    data = load_iris()
    model = KernelRidge().fit(data.data, data.target)
    with pytest.raises(ConversionError, match="skl2onnx cannot convert KernelRidge"):
        write_model(model, data.data, tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written for a model that did not convert"


def test_a_model_that_disagrees_with_the_original_is_not_written(tmp_path):
    data = load_iris()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(data.data, data.target)
    converted = convert(model, 4)

    def off_by_a_bit(x):
        # The "original" now answers probabilities 0.01 away: beyond the tolerance.
        want = converted.predict(x)
        return {**want, "probabilities": np.clip(want["probabilities"] + 0.01, 0, 1)}

    skewed = dataclasses.replace(converted, predict=off_by_a_bit)
    with pytest.raises(Disagreement, match=r"differ by up to 0\.01"):
        write_converted(skewed, data.data, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_sample_with_words_says_which_cell(tmp_path):
    data = load_iris()
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(data.data, data.target)
    joblib.dump(model, tmp_path / "model.joblib")
    (tmp_path / "train.csv").write_text("a,b,c,d\n1,2,3,4\n1,2,three,4\n")
    done = subprocess.run(
        [Path(sys.executable).with_name("modelship-convert"), str(tmp_path / "model.joblib"),
         "--sample", str(tmp_path / "train.csv"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert done.returncode == 1
    assert "row 3, column 'c': 'three' is not a number" in done.stderr


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_the_command_line_converts_xgboost_and_lightgbm_estimators(tmp_path, framework):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    if framework == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=5, max_depth=3)
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1)
    model.fit(data.data, data.target)
    joblib.dump(model, tmp_path / "model.joblib")
    with open(tmp_path / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(data.feature_names))
        w.writerows(data.data.tolist())
    done = subprocess.run(
        [Path(sys.executable).with_name("modelship-convert"), str(tmp_path / "model.joblib"),
         "--sample", str(tmp_path / "train.csv"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "out" / "model.card.json").read_text())
    assert card["feature_names"] == list(data.feature_names)
    assert card["class_labels"] == ["0", "1"]
    # Without true classes the baseline's class shares are the model's own predictions'.
    predicted = model.predict(data.data)
    assert card["baseline"]["classes"] == pytest.approx([np.mean(predicted == 0), np.mean(predicted == 1)])
    onx = onnx.load(tmp_path / "out" / "model.onnx")
    # One label per row (onnxmltools' LightGBM declares the label [1]; the converter fixes it).
    label = next(o for o in onx.graph.output if o.name == "label")
    assert label.type.tensor_type.shape.dim[0].dim_param == "N" or not label.type.tensor_type.shape.dim[0].HasField("dim_value")
    np.testing.assert_array_equal(run_onnx(onx, data.data)["label"].reshape(-1), predicted)


def digits_sample(tmp_path: Path, rows: int = 300):
    """A logistic regression on scikit-learn's 8x8 digits (values 0..16), dumped, and its CSV sample."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    data = load_digits()
    x, y = data.data[:rows], data.target[:rows]
    model = LogisticRegression(max_iter=300).fit(x, y)
    joblib.dump(model, tmp_path / "digits.joblib")
    with open(tmp_path / "digits.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(data.feature_names))
        w.writerows(x.tolist())
    return model, x


def convert_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [Path(sys.executable).with_name("modelship-convert"), str(tmp_path / "digits.joblib"),
         "--sample", str(tmp_path / "digits.csv"), "--out", str(tmp_path / "out"), *extra],
        capture_output=True, text=True,
    )


def test_image_option_marks_the_features_as_a_picture_in_the_card(tmp_path):
    model, x = digits_sample(tmp_path)
    done = convert_cli(tmp_path, "--image", "8x8:16")
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "out" / "model.card.json").read_text())
    assert card["image"] == {"height": 8, "width": 8, "background": 0.0, "ink": 16.0}
    assert len(card["feature_names"]) == 64 and card["feature_names"][9] == "pixel_1_1"
    onx = onnx.load(tmp_path / "out" / "model.onnx")
    np.testing.assert_array_equal(run_onnx(onx, x)["label"], model.predict(x.astype(np.float32)))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("8x8", {"height": 8, "width": 8, "background": 0.0, "ink": 1.0}),
        ("8x8:16", {"height": 8, "width": 8, "background": 0.0, "ink": 16.0}),
        ("28x20:255..0", {"height": 28, "width": 20, "background": 255.0, "ink": 0.0}),
        ("4x4:-1..1", {"height": 4, "width": 4, "background": -1.0, "ink": 1.0}),
    ],
)
def test_image_option_reads_size_and_values(text, want):
    from modelship_convert.card import parse_image

    assert parse_image(text) == want


@pytest.mark.parametrize(
    ("text", "why"),
    [("8", "expected HEIGHTxWIDTH"), ("0x8", "expected HEIGHTxWIDTH"), ("8x8:ink", "is not INK"),
     ("8x8:3..3", "must differ")],
)
def test_image_option_refuses_what_it_cannot_read(text, why):
    from modelship_convert.card import parse_image

    with pytest.raises(ValueError, match=why):
        parse_image(text)


def test_image_option_that_is_not_the_feature_count_is_refused_and_nothing_written(tmp_path):
    digits_sample(tmp_path, rows=100)
    done = convert_cli(tmp_path, "--image", "8x7:16")
    assert done.returncode == 1
    assert "image 8x7 is 56 pixels, but the model has 64 features" in done.stderr
    assert not (tmp_path / "out").exists()

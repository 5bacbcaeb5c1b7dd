"""Feedback, quality metrics and drift through the real binary: ids counted once (counted,
unknown, expired, duplicate, invalid), truths by class index or label, items carrying their
own predictions, the confusion and accuracy counters, feedback forwarded to the replica that
served it (two servers, API keys on), drift of a shifted feature against the card's baseline,
and the page's "How it is doing" panel in headless Chromium."""

import os
import re
import time

import numpy as np
import pytest
import requests

from conftest import FLOWERS, LABELS, Server
from monitor_helpers import start_iris, infer, metric
from test_web_page import browser, page  # noqa: F401  (the headless Chromium fixtures)

KEY = "k-" + "7" * 30


def start(*args, env=None):
    return start_iris(*args, env=env)


def feedback(server, items, headers=None, model="iris"):
    r = requests.post(f"{server.url}/v2/models/{model}/feedback", json={"items": items}, headers=headers, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def iris():
    s = start("--feedback-window", "3s")
    yield s
    s.stop()


def test_feedback_counts_each_id_once_and_says_why_others_are_not(iris):
    session = requests.Session()
    ids = [infer(session, iris, FLOWERS).headers["x-modelship-inference-id"] for _ in range(6)]
    # All right, by index; by label with one wrong row; and an item carrying its own prediction.
    answer = feedback(iris, [
        {"id": ids[0], "truth": LABELS},
        {"id": ids[1], "truth": ["setosa", "versicolor", "versicolor"]},
        {"truth": [2], "predicted": ["virginica"]},
    ])
    assert answer == {"counted": 3, "unknown": 0, "expired": 0, "duplicate": 0, "invalid": 0, "unreachable": 0, "errors": []}
    never = re.sub(r"\.[0-9a-f]+\.(?=[^.]+$)", ".fffffff.", ids[0])
    answer = feedback(iris, [
        {"id": ids[0], "truth": LABELS},            # again: counted once only
        {"id": never, "truth": [0, 0, 0]},          # this server never made it
        {"id": "not-an-id", "truth": [0]},
        {"id": ids[2], "truth": ["setosa", "rose", 2]},
        {"id": ids[3], "truth": [0, 1]},            # 2 truths for 3 rows
    ])
    assert {k: answer[k] for k in ("counted", "duplicate", "unknown", "invalid")} == {
        "counted": 0, "duplicate": 1, "unknown": 2, "invalid": 2}
    fields = sorted(e["field"] for e in answer["errors"])
    assert fields == ["items[3].truth", "items[4].truth"], answer["errors"]
    assert any("rose" in e["message"] for e in answer["errors"])
    # A refused item can be sent again, right.
    assert feedback(iris, [{"id": ids[3], "truth": LABELS}])["counted"] == 1
    time.sleep(3.3)
    assert feedback(iris, [{"id": ids[4], "truth": LABELS}])["expired"] == 1

    # 3 + 3 + 1 + 3 rows counted; one wrong (virginica taken for versicolor).
    assert metric(iris, "modelship_feedback_rows_total", model="iris") == 10
    assert metric(iris, "modelship_feedback_correct_total", model="iris") == 9
    assert metric(iris, "modelship_confusion_total", truth="versicolor", predicted="virginica") == 1
    assert metric(iris, "modelship_confusion_total", truth="setosa", predicted="setosa") == 3
    assert metric(iris, "modelship_feedback_total", result="counted") == 4
    assert metric(iris, "modelship_feedback_total", result="expired") == 1
    assert metric(iris, "modelship_predictions_total", model="iris", **{"class": "setosa"}) == 6
    summary = requests.get(f"{iris.url}/v2/models/iris/monitor").json()
    assert summary["scope"] == "pod"
    assert summary["feedback"]["accuracy"] == pytest.approx(0.9)


@pytest.mark.parametrize("body,field", [
    (b"{", "body"),
    (b'{"items": []}', "items"),
    (b'{"items": [{"id": "x"}]}', "items[0].truth"),
    (b'{"items": [{"truth": [1]}]}', "items[0]"),
])
def test_a_malformed_feedback_body_is_a_400_naming_the_field(iris, body, field):
    r = requests.post(f"{iris.url}/v2/models/iris/feedback", data=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"].startswith(field), r.json()


def test_feedback_by_id_reaches_the_replica_that_served_it(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "team").write_text(KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    env = {"MODELSHIP_POD_IP": "127.0.0.1"}
    a = start("--api-keys-dir", str(keys), env=env)
    b = start("--api-keys-dir", str(keys), env=env)
    try:
        session = requests.Session()
        session.headers.update(auth)
        ids = [infer(session, a, FLOWERS).headers["x-modelship-inference-id"] for _ in range(3)]
        assert ids[0].endswith(f"7f000001{a.port:04x}"), ids[0]
        r = requests.post(f"{b.url}/v2/models/iris/feedback", json={"items": [{"id": ids[0], "truth": LABELS}]})
        assert r.status_code == 401, "feedback needs the API key"
        answer = feedback(b, [{"id": ids[0], "truth": LABELS}, {"id": ids[1], "truth": [0, 1, "rose"]}], headers=auth)
        assert (answer["counted"], answer["invalid"]) == (1, 1)
        assert answer["errors"][0]["field"] == "items[1].truth", answer["errors"]
        assert metric(a, "modelship_feedback_total", result="counted") == 1
        assert metric(b, "modelship_feedback_total", result="counted") == 0
        assert metric(a, "modelship_feedback_rows_total") == 3
        # Sent again through the other replica: still once.
        assert feedback(b, [{"id": ids[0], "truth": LABELS}], headers=auth)["duplicate"] == 1
        a.stop()
        assert feedback(b, [{"id": ids[2], "truth": LABELS}], headers=auth)["unreachable"] == 1
        assert metric(b, "modelship_feedback_total", result="unreachable") == 1
    finally:
        a.stop()
        b.stop()


def iris_rows():
    from sklearn.datasets import load_iris

    return load_iris().data


def send_rows(server, rows, per_request=20):
    session = requests.Session()
    for i in range(0, len(rows), per_request):
        infer(session, server, [list(map(float, r)) for r in rows[i:i + per_request]])


@pytest.fixture(scope="module")
def drifting():
    """An Iris server fed 1000 rows like the training data, then 1000 with petal length + 2 cm."""
    s = start("--drift-window", "1000")
    rng = np.random.default_rng(0)
    data = iris_rows()
    send_rows(s, data[rng.integers(0, len(data), 1000)])
    before = requests.get(f"{s.url}/v2/models/iris/monitor").json()
    before_metrics = {f: metric(s, "modelship_drift_psi", feature=f) for f in FEATURES}
    shifted = data[rng.integers(0, len(data), 1000)].copy()
    shifted[:, 2] += 2.0
    send_rows(s, shifted)
    yield s, before, before_metrics
    s.stop()


FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_inputs_like_the_training_data_are_stable(drifting):
    _, before, before_metrics = drifting
    psi = {f["name"]: f["psi"] for f in before["drift"]["features"]}
    assert set(psi) == set(FEATURES)
    for name, value in psi.items():
        assert value < 0.1, f"{name}: PSI {value}"
        assert before_metrics[name] == pytest.approx(value)
    assert before["drift"]["classes"]["psi"] < 0.1


def test_petal_length_shifted_by_2cm_drifts_and_the_rest_does_not(drifting):
    s, _, _ = drifting
    after = requests.get(f"{s.url}/v2/models/iris/monitor").json()
    psi = {f["name"]: (f["psi"], f["status"]) for f in after["drift"]["features"]}
    assert psi["petal length (cm)"][0] > 0.2 and psi["petal length (cm)"][1] == "drifted"
    for name in FEATURES:
        if name != "petal length (cm)":
            assert psi[name][0] < 0.1, f"{name}: PSI {psi[name]}"
    assert metric(s, "modelship_drift_psi", feature="petal length (cm)") > 0.2
    # The additive counters a recording rule sums across pods: every row in one bin per feature.
    assert metric(s, "modelship_drift_inputs_total", feature="petal length (cm)") == 2000
    assert metric(s, "modelship_drift_baseline_proportion", feature="petal length (cm)") == pytest.approx(1.0, abs=1e-3)


def test_without_a_baseline_the_page_says_why(tmp_path):
    import json
    import shutil

    here = os.path.dirname(os.path.abspath(__file__))
    models = os.path.join(here, "..", "..", "models")
    shutil.copy(os.path.join(models, "iris.onnx"), tmp_path / "iris.onnx")
    card = json.load(open(os.path.join(models, "iris.card.json")))
    card.pop("baseline")
    (tmp_path / "iris.card.json").write_text(json.dumps(card))
    s = Server("--model", str(tmp_path / "iris.onnx"), "--runtime", "tract")
    try:
        infer(requests.Session(), s, FLOWERS)
        d = requests.get(f"{s.url}/v2/models/iris/monitor").json()["drift"]
        assert d["available"] is False and "no training baseline" in d["reason"]
        assert "modelship_drift_psi" not in requests.get(f"{s.url}/metrics").text
    finally:
        s.stop()


def test_the_panel_shows_accuracy_and_the_drifted_feature(drifting, page):
    s, _, _ = drifting
    session = requests.Session()
    ids = [infer(session, s, FLOWERS).headers["x-modelship-inference-id"] for _ in range(10)]
    items = [{"id": i, "truth": LABELS} for i in ids[:9]] + [{"id": ids[9], "truth": [1, 1, 2]}]
    assert feedback(s, items)["counted"] == 10

    page.goto(f"{s.url}/models/iris")
    page.wait_for_selector("#monitor-accuracy-value")
    assert page.inner_text("#monitor-accuracy-value") == "96.7%"  # 29 of 30 rows
    row = page.locator('#monitor-drift tr[data-feature="petal length (cm)"]')
    assert row.get_attribute("data-status") == "drifted"
    assert "drifted" in row.inner_text()
    assert "Drifted: petal length (cm)" in page.inner_text("#monitor-drift")
    assert page.locator('#monitor-drift tr[data-feature="sepal width (cm)"]').get_attribute("data-status") == "stable"
    assert "this pod" in page.inner_text("#monitor-scope")
    assert "in the last 10 minutes" in page.inner_text("#monitor-traffic")


def test_a_regressors_feedback_gives_its_absolute_errors():
    """The diabetes regressor (gradient boosting: ONNX Runtime, which tract cannot run): truths
    sent by id at known distances from what the server answered; the abs_error histogram and
    the summary's mean are those distances."""
    import glob

    import onnxruntime

    library = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[0]
    model = os.path.join(os.path.dirname(__file__), "..", "..", "models", "diabetes.onnx")
    s = Server("--model", model, "--runtime", "onnxruntime", "--ort-library", library)
    try:
        name = requests.get(f"{s.url}/v2/models/diabetes", timeout=5).json()["name"]
        rng = np.random.default_rng(3)
        rows = rng.normal(0.0, 0.05, (5, 10)).round(4).tolist()
        body = {"inputs": [{"name": "input", "shape": [5, 10], "datatype": "FP32", "data": rows}]}
        r = requests.post(f"{s.url}/v2/models/{name}/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        predicted = r.json()["outputs"][0]["data"]
        assert len(predicted) == 5, r.json()
        offsets = [10.0, -20.0, 30.0, 0.0, -5.0]
        truths = [p + o for p, o in zip(predicted, offsets)]
        answer = feedback(s, [{"id": r.headers["x-modelship-inference-id"], "truth": truths}], model=name)
        assert answer["counted"] == 1, answer
        assert metric(s, "modelship_abs_error_count", model=name) == 5
        # float32 answers against float64 truths: the distances hold to float32's precision.
        assert metric(s, "modelship_abs_error_sum", model=name) == pytest.approx(65.0, abs=1e-3)
        summary = requests.get(f"{s.url}/v2/models/{name}/monitor", timeout=5).json()
        assert summary["feedback"]["abs_error_mean"] == pytest.approx(13.0, abs=1e-3), summary
        # A class label is no truth for a regressor: invalid, naming the field.
        answer = feedback(s, [{"truth": ["setosa"], "predicted": [1.0]}], model=name)
        assert answer["invalid"] == 1 and answer["errors"][0]["field"].startswith("items[0]"), answer
    finally:
        s.stop()

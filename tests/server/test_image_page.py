"""The page for an image model, in headless Chromium: the digits CNN (models/digits-cnn.onnx,
input [-1, 1, 8, 8]) gets a drawing pad and an upload instead of the numbers form; a drawn
stroke and an uploaded digit each come back as a class with the most probable classes.

The same for a flattened image: scikit-learn's digits logistic regression (models/digits.onnx,
input [-1, 64], pixels 0..16) whose card marks the input as an 8 x 8 image; the page sends the
picture as one row of 64 values in the card's range. A card whose image does not fit the input
is refused at load, naming the card field.
"""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests
from PIL import Image
from sklearn.datasets import load_digits

from conftest import Server
from test_label_check import refusal
from test_web_page import SCREENSHOTS, browser  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[2]
CNN = ROOT / "models" / "digits-cnn.onnx"
FLAT = ROOT / "models" / "digits.onnx"


@pytest.fixture(scope="module")
def digits_server():
    s = Server("--model", str(CNN), "--runtime", "tract")
    yield s
    s.stop()


@pytest.fixture()
def page(browser, digits_server):  # noqa: F811
    p = browser.new_page()
    p.goto(f"{digits_server.url}/models/digits-cnn")
    p.wait_for_selector("#image:not([hidden])", timeout=10_000)
    yield p
    p.close()


def a_clear_digit():
    """A digit from scikit-learn's set that the committed model reads with p > 0.99: (digit, 8x8 in 0..1)."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    session = ort.InferenceSession(str(CNN), providers=["CPUExecutionProvider"])
    label, probs = session.run(None, {"input": x[:, None]})
    for i in range(len(x)):
        if digits.target[i] == 3 and label[i] == 3 and probs[i].max() > 0.99:
            return 3, x[i]
    raise AssertionError("no clear 3 in the digits data set")


def test_an_image_model_gets_a_drawing_pad_not_the_numbers_form(page):
    assert page.is_hidden("#single") and page.is_hidden("#batch")
    assert "8 × 8 pixels" in page.text_content("#image-help")


def test_an_uploaded_digit_is_read_as_its_class(page, tmp_path):
    digit, pixels = a_clear_digit()
    # Dark ink on white, 64x64, as a scan would be: the page inverts it and scales it down.
    img = Image.fromarray(((1.0 - pixels) * 255).astype(np.uint8)).resize((64, 64), Image.NEAREST)
    path = tmp_path / "three.png"
    img.save(path)
    page.set_input_files("#image-file", str(path))
    page.wait_for_function("document.getElementById('pad').getContext('2d').getImageData(112, 112, 1, 1).data[0] >= 0")
    page.click("#predict-image")
    page.wait_for_selector("#top-classes li", timeout=10_000)
    assert page.text_content("#image-result .prediction") == str(digit)
    items = page.locator("#top-classes li")
    assert items.count() == 3
    assert items.nth(0).locator(".name").text_content() == str(digit)
    page.screenshot(path=str(SCREENSHOTS / "digits-upload.png"))


def test_a_drawn_stroke_comes_back_as_a_class(page):
    box = page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    for t in np.linspace(0.15, 0.85, 12):
        page.mouse.move(x, box["y"] + box["height"] * t)
    page.mouse.up()
    page.click("#predict-image")
    page.wait_for_selector("#top-classes li", timeout=10_000)
    predicted = page.text_content("#image-result .prediction")
    assert predicted in [str(d) for d in range(10)]
    # The three classes shown are in order of probability.
    pcts = [float(t.rstrip("%")) for t in page.locator("#top-classes .pct").all_text_contents()]
    assert len(pcts) == 3 and pcts == sorted(pcts, reverse=True)
    # Clearing the pad clears the answer.
    page.click("#clear-pad")
    assert page.locator("#top-classes").count() == 0


# ---- a flattened image: scikit-learn's digits as 64 features, 0..16 ----------------------------


@pytest.fixture(scope="module")
def flat_server():
    s = Server("--model", str(FLAT), "--runtime", "tract")
    yield s
    s.stop()


@pytest.fixture()
def flat_page(browser, flat_server):  # noqa: F811
    p = browser.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.goto(f"{flat_server.url}/models/digits")
    p.wait_for_selector("#image:not([hidden])", timeout=10_000)
    yield p
    p.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def a_clear_flat_digit():
    """A digit the committed logistic regression reads with p > 0.99: (digit, 8x8 in 0..16)."""
    digits = load_digits()
    x = digits.data.astype(np.float32)
    session = ort.InferenceSession(str(FLAT), providers=["CPUExecutionProvider"])
    label, probs = session.run(None, {"input": x})
    for i in range(len(x)):
        if digits.target[i] == 7 and label[i] == 7 and probs[i].max() > 0.99:
            return 7, digits.images[i]
    raise AssertionError("no clear 7 in the digits data set")


def infer_bodies(page):
    """The JSON bodies of the infer calls the page sends, as they are sent."""
    bodies = []
    page.on("request", lambda r: bodies.append(r.post_data_json) if r.url.endswith("/infer") else None)
    return bodies


def test_the_card_marks_the_flat_input_as_an_image(flat_server):
    card = requests.get(f"{flat_server.url}/models/digits/card", timeout=10).json()
    assert card["image"] == {"height": 8, "width": 8, "background": 0.0, "ink": 16.0}
    meta = requests.get(f"{flat_server.url}/v2/models/digits", timeout=10).json()
    assert meta["inputs"][0]["shape"] == [-1, 64]


def test_a_flat_image_model_gets_the_drawing_pad(flat_page):
    assert flat_page.is_hidden("#single") and flat_page.is_hidden("#batch")
    assert flat_page.locator("#fields input").count() == 0, "no 64 number fields"
    help_text = flat_page.text_content("#image-help")
    assert "8 × 8 pixels" in help_text and "from 0 (no ink) to 16 (full ink)" in help_text


def test_an_uploaded_digit_is_sent_as_64_values_in_the_cards_range(flat_page, tmp_path):
    digit, pixels = a_clear_flat_digit()
    bodies = infer_bodies(flat_page)
    # Dark ink on white, 64x64: the page inverts it, scales it to 8 x 8 and maps ink to 0..16.
    img = Image.fromarray(((1.0 - pixels / 16.0) * 255).astype(np.uint8)).resize((64, 64), Image.NEAREST)
    path = tmp_path / "seven.png"
    img.save(path)
    flat_page.set_input_files("#image-file", str(path))
    flat_page.wait_for_function("document.getElementById('pad').getContext('2d').getImageData(112, 112, 1, 1).data[0] >= 0")
    flat_page.click("#predict-image")
    flat_page.wait_for_selector("#top-classes li", timeout=10_000)
    assert len(bodies) == 1
    (sent,) = bodies[0]["inputs"]
    assert sent["shape"] == [1, 64] and sent["datatype"] == "FP32" and sent["name"] == "input"
    values = np.array(sent["data"]).reshape(8, 8)
    # Row-major, in 0..16: the picture it came from, up to the blur of scaling it twice.
    assert values.min() >= 0 and values.max() <= 16
    assert np.abs(values - pixels).mean() < 1.0, np.round(values, 1)
    assert flat_page.text_content("#image-result .prediction") == str(digit)
    items = flat_page.locator("#top-classes li")
    assert items.count() == 3
    assert items.nth(0).locator(".name").text_content() == str(digit)
    flat_page.locator("#image").screenshot(path=str(SCREENSHOTS / "digits-flat-upload.png"))


def test_a_drawn_stroke_on_the_flat_model_comes_back_as_a_class(flat_page):
    bodies = infer_bodies(flat_page)
    box = flat_page.locator("#pad").bounding_box()
    x = box["x"] + box["width"] / 2
    flat_page.mouse.move(x, box["y"] + box["height"] * 0.15)
    flat_page.mouse.down()
    for t in np.linspace(0.15, 0.85, 12):
        flat_page.mouse.move(x, box["y"] + box["height"] * t)
    flat_page.mouse.up()
    flat_page.click("#predict-image")
    flat_page.wait_for_selector("#top-classes li", timeout=10_000)
    assert flat_page.text_content("#image-result .prediction") in [str(d) for d in range(10)]
    (sent,) = bodies[0]["inputs"]
    values = np.array(sent["data"]).reshape(8, 8)
    # A vertical stroke down the middle, on the border of columns 3 and 4 (an eighth of the
    # pad wide each, the stroke a ninth): half-inked there from rows 1 to 6, no ink elsewhere.
    assert (values[1:7, 3:5] > 4).all() and values[:, [0, 1, 2, 5, 6, 7]].max() == 0, np.round(values, 1)


def test_an_image_card_that_does_not_fit_the_input_is_refused(tmp_path):
    shutil.copy(FLAT, tmp_path / "digits.onnx")
    card = json.loads((ROOT / "models" / "digits.card.json").read_text())
    card["image"]["width"] = 7
    (tmp_path / "digits.card.json").write_text(json.dumps(card))
    line = refusal(tmp_path / "digits.onnx", "tract")
    assert "the model card does not fit the model: card field `image`: 8 x 7 = 56 pixels" in line, line
    assert "input 'input' of shape [-1, 64]" in line, line


def test_the_drift_panel_of_64_pixels_lists_the_most_drifted_and_folds_the_rest(browser, flat_server):  # noqa: F811
    """An image's pixels are features too: the panel shows the 10 most drifted, most first, and
    folds the other 55 (54 pixels and the predicted classes' row) into a <details> (it listed all
    65 rows before)."""
    digits = load_digits()
    rows = digits.data[:120].astype(np.float32)
    rows[:, 5] = 16.0  # one pixel always inked: that feature drifts
    body = {"inputs": [{"name": "input", "shape": [len(rows), 64], "datatype": "FP32", "data": rows.ravel().tolist()}]}
    r = requests.post(f"{flat_server.url}/v2/models/digits/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    p = browser.new_page()
    try:
        p.goto(f"{flat_server.url}/models/digits")
        p.wait_for_selector("#monitor-drift-more", timeout=10_000)
        shown = p.locator("#monitor-drift > .table-wrap tbody tr")
        assert shown.count() == 10
        psi = [float(t) for t in shown.locator("td:nth-child(2)").all_inner_texts()]
        assert psi == sorted(psi, reverse=True), psi
        assert shown.first.get_attribute("data-status") == "drifted"
        assert "55 more features" in p.inner_text("#monitor-drift-more summary")
        assert p.locator("#monitor-drift-more tbody tr").count() == 55
        assert not p.locator("#monitor-drift-more tbody tr").first.is_visible(), "the rest is folded"
    finally:
        p.close()

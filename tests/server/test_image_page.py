"""The page for an image model, in headless Chromium: the digits CNN (models/digits-cnn.onnx,
input [-1, 1, 8, 8]) gets a drawing pad and an upload instead of the numbers form; a drawn
stroke and an uploaded digit each come back as a class with the most probable classes.
"""

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from conftest import Server
from test_web_page import SCREENSHOTS, browser  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[2]
CNN = ROOT / "models" / "digits-cnn.onnx"


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

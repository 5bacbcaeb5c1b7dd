"""The web page in a real browser: Debian's headless Chromium driven by Playwright.

Fills the Iris form, submits, reads the predicted class; scores pasted CSV rows;
shows a server error in words; and does all that at a phone's width too.
Screenshots of the answered form, the batch table and the phone width go to
$MODELSHIP_SCREENSHOTS_DIR, by default $MODELSHIP_ARTIFACTS/screenshots
(/tmp/modelship-artifacts/screenshots), outside the tree: a test run leaves
the checkout as it was. `make screenshots` writes them to docs/screenshots/.
"""

import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from conftest import FLOWERS

CHROMIUM = os.environ.get("MODELSHIP_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("MODELSHIP_ARTIFACTS", "/tmp/modelship-artifacts"))
SCREENSHOTS = Path(os.environ.get("MODELSHIP_SCREENSHOTS_DIR") or ARTIFACTS / "screenshots")
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
# Flags for a sandboxed machine without internet: no GPU, no background calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"skipped: the playwright package is not installed ({e}); run scripts/setup-python.sh")
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"skipped: no Chromium at {CHROMIUM}; run scripts/setup.sh (Debian package chromium)")
    profile = tempfile.mkdtemp(prefix="modelship-chromium-")
    with sync_playwright() as p:
        try:
            ctx = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=DESKTOP,
            )
        except Exception as e:  # a browser that cannot start here is a skip with its reason, never a pass
            shutil.rmtree(profile, ignore_errors=True)
            pytest.skip(f"skipped: Chromium could not start: {str(e).splitlines()[0]}")
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(15_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def distinct_colors(png: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return len(img.getcolors(maxcolors=1 << 24) or [])


def fill_flower(page, flower):
    for i, value in enumerate(flower):
        page.fill(f"#feature-{i}", str(value))


def test_index_lists_the_models(server, page):
    page.goto(server.url + "/")
    link = page.get_by_role("link", name="iris", exact=True)
    assert link.get_attribute("href") == "models/iris"
    link.click()
    page.wait_for_url("**/models/iris")
    page.wait_for_selector("#single:not([hidden])")


def test_form_predicts_virginica_and_draws_bars(server, page):
    page.goto(server.url + "/models/iris")
    # Fields are labelled with the card's feature names and pre-filled with its example.
    field = page.get_by_label("petal width (cm)")
    assert field.input_value() == "1.5"
    fill_flower(page, FLOWERS[2])
    page.get_by_role("button", name="Predict").click()
    prediction = page.locator("#single-result .prediction")
    prediction.wait_for()
    assert prediction.inner_text() == "virginica"
    bars = page.locator("#single-result .bar")
    assert bars.count() == 3
    assert bars.nth(2).locator(".name").inner_text() == "virginica"
    assert "best" in bars.nth(2).get_attribute("class")
    pcts = [float(bars.nth(i).locator(".pct").inner_text().rstrip("%")) for i in range(3)]
    assert abs(sum(pcts) - 100) < 0.5 and pcts[2] == max(pcts)

    png = page.screenshot(path=str(SCREENSHOTS / "web-page.png"), full_page=True)
    assert distinct_colors(png) > 50, "the screenshot looks blank"


def test_form_reports_a_bad_field_in_words(server, page):
    page.goto(server.url + "/models/iris")
    page.wait_for_selector("#single:not([hidden])")
    page.fill("#feature-0", "")
    page.get_by_role("button", name="Predict").click()
    alert = page.get_by_role("alert")
    assert "'sepal length (cm)' needs a number" in alert.inner_text()
    assert page.get_attribute("#feature-0", "aria-invalid") == "true"


def test_server_errors_are_shown_in_words(server, page):
    page.goto(server.url + "/models/iris")
    page.wait_for_selector("#single:not([hidden])")
    # The page sends what the form holds; make the server refuse it by
    # pretending the model takes 5 features (a stale page, say).
    page.evaluate(
        """() => { const orig = window.fetch; window.fetch = (url, opts) => {
            if (opts && opts.body) { const b = JSON.parse(opts.body); b.inputs[0].shape = [1, 5]; b.inputs[0].data.push(1); opts.body = JSON.stringify(b); }
            return orig(url, opts); }; }"""
    )
    page.get_by_role("button", name="Predict").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    text = alert.inner_text()
    assert "The server answered 400" in text and "input 'input': shape [1, 5]" in text, text


def test_pasted_csv_rows_are_scored_into_a_table(server, page):
    page.goto(server.url + "/models/iris")
    page.wait_for_selector("#batch:not([hidden])")
    rows = ["sepal_length,sepal_width,petal_length,petal_width"]
    rows += [",".join(map(str, f)) for f in FLOWERS]
    rows.append("1,2,oops,4")
    page.get_by_label("Paste CSV rows, one example per line").fill("\n".join(rows))
    page.get_by_role("button", name="Score rows").click()
    table = page.locator("#batch-result table")
    table.wait_for()
    classes = table.locator("tbody tr td.text").all_inner_texts()
    assert classes == ["setosa", "versicolor", "virginica"]
    summary = page.locator("#batch-result .summary").inner_text()
    assert "3 rows scored, 1 skipped (header line skipped)" in summary
    assert "line 5: 'oops' is not a number" in page.locator("#batch-result").inner_text()
    png = page.locator("#batch").screenshot(path=str(SCREENSHOTS / "web-page-batch.png"))
    assert distinct_colors(png) > 50


def test_phone_width_has_no_horizontal_scroll(server, browser):
    page = browser.new_page()
    page.set_viewport_size(PHONE)
    try:
        page.goto(server.url + "/models/iris")
        fill_flower(page, FLOWERS[2])
        page.get_by_role("button", name="Predict").click()
        page.locator("#single-result .prediction").wait_for()
        assert page.locator("#single-result .prediction").inner_text() == "virginica"
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        box = page.locator("#feature-0").bounding_box()
        assert box["width"] > PHONE["width"] * 0.6, "fields should take the phone's width, one per row"
        png = page.screenshot(path=str(SCREENSHOTS / "web-page-phone.png"), full_page=True)
        assert distinct_colors(png) > 50
    finally:
        page.close()


def test_unknown_model_page_is_a_404_in_html(server):
    r = requests.get(server.url + "/models/nope", timeout=10)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "No model named" in r.text and 'href="../models/iris"' in r.text

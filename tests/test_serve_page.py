"""The page of `vggnet serve` (GET /) in a real browser: the operating system's headless Chromium driven by
Playwright against a real `vggnet serve` process, compared with `vggnet.Predictor`'s answers.

    VGGNET_SCREENSHOTS=docs/images pytest tests/test_serve_page.py   # also writes docs/images/serve-page.png
"""

import os
import re
import shutil
from pathlib import Path

import pytest
from matplotlib import cbook
from playwright.sync_api import expect, sync_playwright
from serving import ServeProcess

import vggnet

TIMEOUT_MS = 60_000  # a busy machine may take a while to classify; every wait below is for a state


def find_chromium() -> str | None:
    """Debian's Chromium (Playwright's own browser download is not reachable here)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def server(trained):
    with ServeProcess(["--model", str(trained[0]), "--precision", "fp32"]) as process:
        yield process


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page.goto(server.url)
    yield page
    page.close()


@pytest.fixture
def photo(tmp_path) -> Path:
    """A real photo (matplotlib ships Grace Hopper's portrait)."""
    source = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert source.is_file(), f"matplotlib's sample photo is missing: {source}"
    return Path(shutil.copy(source, tmp_path / "grace_hopper.jpg"))


@pytest.fixture
def not_an_image(tmp_path) -> Path:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: ants, bees, cats\n")
    return path


def test_page_shows_predict_top_classes_latency_and_gradcam(page, trained, photo, not_an_image, tmp_path):
    expected = vggnet.Predictor(trained[0], device="cpu", precision="fp32")([photo], topk=5)[0]["top"]
    page.get_by_test_id("file-input").set_input_files([photo, not_an_image])
    good, bad = page.get_by_test_id("card").nth(0), page.get_by_test_id("card").nth(1)

    expect(good.get_by_test_id("bar")).to_have_count(len(expected))
    assert good.get_by_test_id("bar-label").first.inner_text() == expected[0]["class"]
    shown = [float(value.rstrip("%")) for value in good.get_by_test_id("bar-value").all_inner_texts()]
    assert shown == pytest.approx([100 * top["prob"] for top in expected], abs=0.1)
    expect(good.get_by_test_id("latency")).to_have_text(re.compile(r"^server \d+(\.\d+)? ms$"))
    expect(bad.get_by_test_id("card-error")).to_contain_text("notes.jpg")
    expect(bad.get_by_test_id("bar")).to_have_count(0)

    image, toggle = good.get_by_test_id("card-image"), good.get_by_test_id("cam-toggle")
    original = image.get_attribute("src")
    with page.expect_response(lambda response: response.url.endswith("/explain")) as explained:
        toggle.click()
    assert explained.value.status == 200 and explained.value.headers["content-type"] == "image/png"
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(image).to_have_attribute("src", re.compile("^blob:"))
    expect(image).not_to_have_attribute("src", original)
    page.wait_for_function("image => image.complete && image.naturalWidth >= 224", arg=image.element_handle())

    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(image).to_have_attribute("src", original)

    screenshot = page.screenshot(path=tmp_path / "serve-page.png", full_page=True)
    if folder := os.environ.get("VGGNET_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "serve-page.png").write_bytes(screenshot)


def test_page_fits_a_phone_and_works_from_the_keyboard(page, photo):
    page.set_viewport_size({"width": 375, "height": 800})
    page.get_by_test_id("file-input").set_input_files(photo)
    expect(page.get_by_test_id("bar").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    stops = []  # [data-testid, focus outline shown] at each Tab stop, up to the first card's cam toggle
    while len(stops) < 12 and (not stops or stops[-1][0] != "cam-toggle"):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("""() => {
            const element = document.activeElement, ring = element.closest("label") || element;
            return [element.dataset.testid, getComputedStyle(ring).outlineStyle !== "none"];
        }"""))  # fmt: skip
    assert ["file-input", True] in stops and stops[-1] == ["cam-toggle", True], stops
    page.keyboard.press("Space")
    expect(page.get_by_test_id("cam-toggle")).to_have_attribute("aria-pressed", "true")


def test_the_model_chooser_and_a_pasted_image(browser, trained, photo):
    """With two models the chooser offers both (the default chosen), a pasted image is classified, and choosing the
    other model classifies it again with that model."""
    args = ["--model", f"first={trained[0]}", "--model", f"second={trained[0]}", "--precision", "fp32"]
    with ServeProcess(args) as server:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url)
        chooser = page.get_by_test_id("model-select")
        expect(chooser).to_be_enabled()
        assert chooser.locator("option").evaluate_all("options => options.map(o => o.value)") == ["first", "second"]
        expect(chooser).to_have_value("first")
        with page.expect_response(lambda response: "/v1/models/first/predict?" in response.url):
            page.evaluate(
                """async (bytes) => {
                    const data = new DataTransfer();
                    data.items.add(new File([new Uint8Array(bytes)], "pasted.jpg", {type: "image/jpeg"}));
                    document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data}));
                }""",
                list(photo.read_bytes()),
            )
        expect(page.get_by_test_id("card")).to_have_count(1)
        expect(page.get_by_test_id("bar").first).to_be_visible()
        with page.expect_response(lambda response: "/v1/models/second/predict?" in response.url) as answer:
            chooser.select_option("second")
        assert answer.value.status == 200
        page.close()

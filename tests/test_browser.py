"""The real app in a real browser: `streamlit run app.py` driven by Playwright in headless Chromium.

Uploads a real X-ray through the file input, waits for the verdict and the overlay, visits every page,
reads a teaching case, and fails on any Streamlit exception. Screenshots go to test-artifacts/.
Needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); without it the test is skipped,
unless the environment variable CI is set, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 90
RUN_TIMEOUT_MS = 150_000  # a page's first run on a loaded 2-core machine: TensorFlow import and model loading
VIEWPORT = {"width": 1400, "height": 1800}
PAGES = (("Samples", "Samples"), ("Teaching mode", "Teaching mode"), ("Model card", "Model cards"),
         ("About", "About this reading aid"), ("Read X-rays", "Read X-rays"))

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytestmark = pytest.mark.skip(reason=f"browser test skipped: no Chromium at {CHROMIUM} "
                                         "(apt-get install chromium); set CI=1 to make this a failure")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_models_dir):
    """`streamlit run app.py` on a free loopback port, with the tiny models; killed at teardown."""
    if not CHROMIUM.exists():
        pytest.fail(f"CI is set but Chromium is missing at {CHROMIUM}: apt-get install chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    env = {**os.environ, "FRACTURE_MODELS_DIR": str(tiny_models_dir), "FRACTURE_SAMPLES_DIR": str(FIXTURES),
           "PYTHONUNBUFFERED": "1"}
    log_path = ARTIFACTS / "streamlit-server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start in {START_TIMEOUT_S} s:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(RUN_TIMEOUT_MS)
            page.outside_requests = []  # the app must work offline: nothing it loads may come from elsewhere
            page.on("request", lambda request: request.url.startswith(server) or request.url.startswith("data:")
                    or page.outside_requests.append(request.url))
            yield page
        finally:
            browser.close()


def settle(page) -> None:
    """Wait until the script run that the last action started has finished."""
    page.wait_for_timeout(300)  # let the rerun start
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=RUN_TIMEOUT_MS)
    page.wait_for_timeout(300)  # and the last elements render


def no_exceptions(page, where: str) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    if exceptions.count():
        shot(page, f"failure_{where}")
        pytest.fail(f"Streamlit exception on {where}: {exceptions.first.inner_text()}")


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_images(page, count: int) -> None:
    """Wait until `count` images have arrived and decoded: the browser fetches each from the media endpoint
    after the script run ends, so on a busy machine they can come a while after the page has settled."""
    page.wait_for_function(
        """count => [...document.querySelectorAll('[data-testid="stImage"] img')]
                      .filter(img => img.complete && img.naturalWidth > 0).length >= count""",
        arg=count, timeout=RUN_TIMEOUT_MS)


def test_upload_diagnose_and_visit_every_page(server, browser_page, fractured_xray_path, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    # The first request to a fresh server is a deep link: the page must still come inside app.py's frame.
    page.goto(f"{server}/about")
    expect(page.locator("h1").first).to_have_text("About this reading aid", timeout=RUN_TIMEOUT_MS)
    settle(page)
    navigation = page.locator('[data-testid="stSidebarNav"]')
    expect(navigation).to_contain_text("Teaching mode")
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("For education and research only")
    no_exceptions(page, "About (deep link)")

    page.goto(server)
    page.wait_for_selector('[data-testid="stFileUploaderDropzoneInput"]', state="attached")
    settle(page)
    no_exceptions(page, "Diagnose (empty)")
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(sidebar).to_contain_text("For education and research only")
    expect(sidebar).to_contain_text("version")
    shot(page, "01_diagnose_empty")

    page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]', str(fractured_xray_path))
    verdict = page.locator('[data-testid="stMetric"]').filter(has_text="Verdict").locator('[data-testid="stMetricValue"]')
    expect(verdict).to_have_text(re.compile(r"^(Fractured|Not fractured)$"), timeout=RUN_TIMEOUT_MS)
    settle(page)
    probability = page.locator('[data-testid="stMetric"]').filter(has_text="Fracture probability")
    expect(probability.locator('[data-testid="stMetricValue"]')).to_have_text(re.compile(r"^[<>]?\d+(\.\d)?%$"))
    expect(page.get_by_text("Grad-CAM of the fracture model")).to_be_visible()
    wait_for_images(page, 2)
    expect(page.get_by_role("button", name=re.compile("Download the report"))).to_be_visible()
    no_exceptions(page, "Diagnose (one X-ray)")
    shot(page, "02_diagnose_result")

    main = page.locator('[data-testid="stMainBlockContainer"]')
    from fracture_app import config

    main.get_by_text(f"{config.TASK_TITLES[config.TYPE_TASK]} ({config.TASK_HELP[config.TYPE_TASK]})").click()
    settle(page)
    expect(page.get_by_text("Grad-CAM of the fracture-type model")).to_be_visible()
    no_exceptions(page, "Diagnose (type heat map)")

    others = sorted((FIXTURES / "fracatlas" / "images" / "Non_fractured").glob("*.jpg"))[:2]
    page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]',
                         [str(fractured_xray_path), *map(str, others), str(FIXTURES / "ATTRIBUTION.md")])
    expect(page.get_by_text("ATTRIBUTION.md could not be read")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    settle(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    expect(page.get_by_role("button", name="Download the table (CSV)")).to_be_visible()
    no_exceptions(page, "Diagnose (several files)")
    shot(page, "03_diagnose_several")

    too_big = tmp_path / "huge_scan.dcm"
    with open(too_big, "wb") as handle:  # sparse: 51 MB on paper, nothing on disk
        handle.truncate(51 * 1024 * 1024)
    page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]', str(too_big))
    expect(page.get_by_text(re.compile(r"must be 50(\.0)?\s?MB or smaller", re.I))).to_be_visible(timeout=RUN_TIMEOUT_MS)
    no_exceptions(page, "Diagnose (over the upload limit)")
    shot(page, "03b_upload_too_big")

    for link, heading in PAGES:
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link).click()
        expect(page.locator("h1").first).to_have_text(heading, timeout=RUN_TIMEOUT_MS)
        settle(page)
        no_exceptions(page, link)
        shot(page, f"04_{link.lower().replace(' ', '_')}")
        if link == "Samples":
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Data set's label")).to_be_visible()
            wait_for_images(page, 2)
        if link == "Teaching mode":
            main.get_by_text("Not fractured", exact=True).click()
            page.get_by_role("button", name="Commit my reading").click()
            expect(page.get_by_text("What the model says")).to_be_visible(timeout=RUN_TIMEOUT_MS)
            settle(page)
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Cases read")).to_contain_text("1")
            no_exceptions(page, "Teaching mode (answer)")
            shot(page, "05_teaching_answer")
    assert page.outside_requests == [], "the app fetched from outside the server (fails offline)"

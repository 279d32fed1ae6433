"""End to end: `cnnq dashboard` as a real server, driven by a real headless Chromium.

Screenshots go to the test's temporary folder; with `CNNQ_TEST_SCREENSHOTS=DIR` (see
`scripts/screenshots`) they are also copied there, which is how `docs/screenshots/` is made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.conftest import cnnq_command, free_port
from tests.dashboard.conftest import FilledDatabase, copy_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (scripts/setup installs it)",
    ),
]


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"cnnq dashboard exited {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"cnnq dashboard did not answer within {seconds}s:\n{log.read_text()}")


@contextmanager
def served_dashboard(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """`cnnq dashboard --port P` in its own process with `env`, until the block ends: (URL, pid)."""
    port = free_port()
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*cnnq_command(), "dashboard", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, server, log)
        yield url, server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def dashboard_url(filled_database: FilledDatabase, tmp_path: Path) -> Iterator[str]:
    """`cnnq dashboard` on a copy of the filled database."""
    env = {**os.environ, **copy_env(filled_database, tmp_path)}
    with served_dashboard(env, tmp_path / "dashboard.log") as (url, _pid):
        yield url


@pytest.fixture
def browser_page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1250})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
            browser.close()


def _save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    copies = os.environ.get("CNNQ_TEST_SCREENSHOTS")
    if copies:
        Path(copies).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(copies) / name)
    return path


def _no_exception(page: Page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0


def test_jobs_table_and_training_curves_in_a_browser(
    filled_database: FilledDatabase, dashboard_url: str, browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    page.goto(f"{dashboard_url}/jobs")
    cells = page.locator("[data-testid='stDataFrame'] td")
    cells.first.wait_for(state="attached")
    shown = set(cells.all_text_contents())
    for job_id in filled_database.job_ids:
        assert f"job?job={job_id}" in shown, f"{job_id} is not in the jobs table"
    assert {"SUCCEEDED", "FAILED"} <= shown
    _no_exception(page)

    # Selecting a row (its checkbox, drawn on the grid's canvas) opens that job's page.
    newest = cells.all_text_contents()[0].removeprefix("job?job=")
    assert newest == filled_database.failed
    grid = page.locator("[data-testid='stDataFrame']").bounding_box()
    assert grid is not None
    heading = page.get_by_role("heading", name=newest)
    for _ in range(3):  # the grid may take the first click as focus only
        page.mouse.move(grid["x"] + 16, grid["y"] + 52)
        page.mouse.click(grid["x"] + 16, grid["y"] + 52, delay=150)
        try:
            heading.wait_for(timeout=15_000)
            break
        except PlaywrightTimeoutError:
            continue
    heading.wait_for()
    page.get_by_text("Traceback (most recent call last)").wait_for()

    page.goto(f"{dashboard_url}/job?job={filled_database.mnist_train}")
    page.get_by_role("heading", name=filled_database.mnist_train).wait_for()
    plots = page.locator(".js-plotly-plot")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4")
    assert plots.count() == 4
    loss = plots.filter(has_text="Loss").first
    assert loss.locator(".scatterlayer .trace").count() == 2  # train and validation
    assert loss.locator(".scatterlayer .point").count() == 4  # two epochs each
    assert "validation" in loss.inner_text()
    _no_exception(page)
    time.sleep(1)  # let plotly finish its transitions before the picture
    _save_screenshot(page, tmp_path, "job.png")


def test_xray_check_upload_in_a_browser(
    filled_database: FilledDatabase, dashboard_url: str, browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    page.goto(f"{dashboard_url}/xray")
    upload = page.locator("input[type=file]")
    upload.wait_for(state="attached")
    # The newest trained model is chosen (the selectbox holds it as its input's value).
    assert filled_database.xray_train in page.locator("[data-testid='stSelectbox']").inner_html()

    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n")
    upload.set_input_files(str(notes))
    page.get_by_text("notes.txt is not an image").wait_for()
    _no_exception(page)

    image = sorted((filled_database.chest_xray / "test" / "PNEUMONIA").glob("*.png"))[0]
    upload.set_input_files(str(image))
    page.get_by_text("Grad-CAM: where the model looked").wait_for()
    label = page.locator("[data-testid='stMetric']").first.inner_text()
    assert "NORMAL" in label or "PNEUMONIA" in label
    assert page.get_by_text("is not an image").count() == 0
    images = page.locator("[data-testid='stImage'] img")
    assert images.count() == 2
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=stImage] img')].every(i => i.complete && i.naturalWidth)"
    )
    _no_exception(page)
    _save_screenshot(page, tmp_path, "xray_check.png")

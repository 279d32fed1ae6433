"""End to end: `cnnq dashboard` as a real server, driven by a real headless Chromium.

Screenshots go to the test's temporary folder; with `CNNQ_TEST_SCREENSHOTS=DIR` (see
`scripts/screenshots`) they are also copied there, which is how `docs/screenshots/` is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

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
        _SERVED[url] = env
        yield url
        del _SERVED[url]


_SERVED: dict[str, dict[str, str]] = {}


def copy_env_of(url: str) -> dict[str, str]:
    """The environment (its database copy) of the dashboard serving `url`."""
    return _SERVED[url]


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


def _row_cells(page: Page, first_cell: str) -> dict[str, str]:
    """The cells of the table row whose first cell reads `first_cell`, by column header, as the grid's
    accessibility text gives them."""
    table = page.locator("[data-testid='stDataFrame']").first
    table.locator("th").last.wait_for(state="attached")
    time.sleep(0.5)  # the grid redraws its accessible table for the new width
    headers = table.locator("th").all_text_contents()
    row = table.locator("tr").filter(has=page.locator("td", has_text=first_cell)).first
    cells = row.locator("td").all_text_contents()
    return dict(zip(headers[len(headers) - len(cells) :], cells, strict=True))


def _sql(env: dict[str, str], query: str, *parameters: object) -> list[tuple]:
    database = env["CNNQ_DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return connection.execute(query, parameters).fetchall()


def test_jobs_table_and_training_curves_in_a_browser(
    filled_database: FilledDatabase, dashboard_url: str, browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    outside: list[str] = []  # requests that would leave this host: none, on an air-gapped network
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if urlsplit(request.url).hostname not in (None, "127.0.0.1", "localhost")
            and not request.url.startswith(("data:", "blob:"))
            else None
        ),
    )
    page.goto(f"{dashboard_url}/jobs")
    cells = page.locator("[data-testid='stDataFrame'] td")
    cells.first.wait_for(state="attached")
    shown = set(cells.all_text_contents())
    for job_id in filled_database.job_ids:
        assert f"job?job={job_id}" in shown, f"{job_id} is not in the jobs table"
    assert {"SUCCEEDED", "FAILED"} <= shown
    _no_exception(page)
    assert page.get_by_text("Page not found").count() == 0  # `/jobs` is the jobs page
    # The numbers it shows are the database's: the total, and a run's best and test accuracy.
    env = copy_env_of(dashboard_url)
    (total,) = _sql(env, "SELECT count(*) FROM jobs WHERE parent_id IS NULL OR kind = 'train'")[0]
    page.get_by_text(f"{total} jobs · page 1 of 1").wait_for()
    run = filled_database.mnist_train
    page.set_viewport_size({"width": 3600, "height": 1250})  # the grid puts only visible columns in the DOM
    row = _row_cells(page, f"job?job={run}")
    page.set_viewport_size({"width": 1400, "height": 1250})
    metric = "SELECT max(value) FROM metrics WHERE job_id = ? AND name = ?"
    (best,) = _sql(env, metric, run, "val_accuracy")[0]
    (test,) = _sql(env, metric, run, "test_accuracy")[0]
    # (the accessible text holds a cell's value, unformatted)
    assert float(row["best val_accuracy"]) == pytest.approx(best) and float(
        row["test_accuracy"]
    ) == pytest.approx(test)
    (result,) = _sql(env, "SELECT result FROM jobs WHERE id = ?", run)[0]
    used = json.loads(result)["hyperparameters"]
    assert (row["optimizer"], row["batch_size"], row["status"]) == (
        used["optimizer"],
        str(used["batch_size"]),
        "SUCCEEDED",
    )
    _save_screenshot(page, tmp_path, "jobs.png")

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
    plots = page.locator("[data-testid='stVegaLiteChart']")
    points = plots.locator("svg [aria-roledescription='point']")
    points.first.wait_for()
    assert plots.count() == 1  # loss, accuracy, learning rate and images/s: four panels of one chart
    assert plots.locator("[aria-label=\"Title text 'Training by epoch'\"]").count() == 1
    # Each drawn point, read from its accessible label ("epoch: 1; loss: 2.3; curve: train loss; ..."),
    # is the job's metric in SQL: two epochs of six curves.
    drawn: dict[str, dict[int, float]] = {}
    for label in points.evaluate_all("marks => marks.map(m => m.getAttribute('aria-label'))"):
        fields = dict(part.split(": ", 1) for part in label.split("; "))
        drawn.setdefault(fields["curve"], {})[int(fields["epoch"])] = float(fields["value"])
    curves = {"train loss": "train_loss", "validation loss": "val_loss", "train accuracy": "train_accuracy",
              "validation accuracy": "val_accuracy", "learning rate": "lr",
              "images per second": "images_per_second"}  # fmt: skip
    assert set(drawn) == set(curves)
    for name, metric_name in curves.items():
        stored = dict(
            _sql(env, "SELECT step, value FROM metrics WHERE job_id = ? AND name = ?", run, metric_name)
        )
        assert sorted(drawn[name]) == sorted(stored) == [1, 2], name
        assert all(drawn[name][epoch] == pytest.approx(stored[epoch], rel=1e-3) for epoch in stored), name
    _no_exception(page)
    time.sleep(1)  # let the chart settle before the picture
    _save_screenshot(page, tmp_path, "job.png")

    # An evaluation's clinical figures at its stored threshold: the job's own, in SQL.
    metric = "SELECT value FROM metrics WHERE job_id = ? AND name = ?"
    (sensitivity,) = _sql(env, metric, filled_database.xray_eval, "sensitivity")[0]
    (specificity,) = _sql(env, metric, filled_database.xray_eval, "specificity")[0]
    page.goto(f"{dashboard_url}/job?job={filled_database.xray_eval}")
    page.get_by_text("Precision-recall curve").first.wait_for()
    shown_metrics = {
        m.locator("[data-testid='stMetricLabel']").inner_text().strip(): m.locator(
            "[data-testid='stMetricValue']"
        ).inner_text()
        for m in page.locator("[data-testid='stMetric']").all()
    }
    assert shown_metrics["sensitivity"] == f"{sensitivity:.3f}"
    assert shown_metrics["specificity"] == f"{specificity:.3f}"
    page.get_by_role("link", name=filled_database.xray_train).first.wait_for()  # to its training job
    _no_exception(page)
    time.sleep(1)
    _save_screenshot(page, tmp_path, "evaluation.png")

    # The review queue: its count is SQL's, and a selected row opens its image with the Grad-CAM.
    (scored,) = _sql(
        env, "SELECT count(*) FROM predictions WHERE bulk_id = ? AND error IS NULL", filled_database.bulk
    )[0]
    page.goto(f"{dashboard_url}/bulk?job={filled_database.bulk}")
    page.get_by_text(f"{scored} inputs match").wait_for()
    review = page.locator("[data-testid='stDataFrame']").first
    review.locator("td").first.wait_for(state="attached")
    box = review.bounding_box()
    assert box is not None
    explained = page.get_by_text("Grad-CAM for")
    for _ in range(3):  # the grid may take the first click as focus only
        page.mouse.click(box["x"] + 16, box["y"] + 36 + 32, delay=150)
        try:
            explained.wait_for(timeout=30_000)
            break
        except PlaywrightTimeoutError:
            continue
    explained.wait_for()
    _no_exception(page)
    _save_screenshot(page, tmp_path, "bulk_review.png")
    assert outside == []


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

"""Every page at scale in a real Chromium: a generated database of 1,000 jobs and 100,000 predictions
(`benchmarks/dashboard_load.py` makes it, and a 10-job one, and compares their times; this test checks
that every page renders at scale, that what it shows matches SQL, the generated sweep's page with all its
charts included, and prints the times)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select

from benchmarks.dashboard_load import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RENDERED,
    Generated,
    fill_database,
    pages,
    served,
    server_env,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@dataclass(frozen=True)
class Shown:
    seconds: float
    """Its first render."""
    text: str
    charts: int
    """Its charts, each drawn (`RENDERED` waits for their marks)."""


def _render_all(url: str, generated: Generated) -> dict[str, Shown]:
    """Each page's first render, text and charts, in a new tab of one browser."""
    shown = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            for name, path in pages(generated).items():
                tab = context.new_page()
                tab.set_default_timeout(120_000)
                started = time.perf_counter()
                tab.goto(f"{url}/{path}")
                tab.wait_for_function(RENDERED, polling=20)
                seconds = time.perf_counter() - started
                assert tab.locator("[data-testid=stException]").count() == 0, (
                    f"{name}: {tab.locator('[data-testid=stException]').first.inner_text()}"
                )
                main = tab.locator("[data-testid=stMain]")
                shown[name] = Shown(
                    seconds, main.inner_text(), main.locator("[data-testid=stVegaLiteChart]").count()
                )
                tab.close()
        finally:
            browser.close()
    return shown


def test_every_page_renders_at_scale_and_shows_what_sql_holds(tmp_path: Path) -> None:
    from cnnq.db.orm import Job, Prediction
    from cnnq.db.session import dispose_engines, session_scope
    from cnnq.sweeps.report import summarize

    results = {}
    for jobs, predictions in ((1000, 100_000),):  # the 10-job comparison is the benchmark's
        database = tmp_path / f"cnnq-{jobs}.db"
        url = f"sqlite:///{database}"
        generated = fill_database(url, jobs, predictions)
        with session_scope(url) as session:
            top_level = session.scalar(
                select(func.count()).where(Job.parent_id.is_(None) | (Job.kind == "train"))
            )
            rows = session.scalar(select(func.count()).where(Prediction.bulk_id == generated.bulk))
            scored = session.scalar(
                select(func.count()).where(Prediction.bulk_id == generated.bulk, Prediction.error.is_(None))
            )
            sweep = summarize(session, session.get(Job, generated.sweep))  # type: ignore[arg-type]
        dispose_engines()
        with served(server_env(tmp_path, database), tmp_path / f"dashboard-{jobs}.log") as base:
            shown = _render_all(base, generated)
        results[jobs] = {name: page.seconds for name, page in shown.items()}
        assert f"{top_level:,} jobs · page 1 of" in shown["Jobs"].text
        assert f"{scored:,} inputs match" in shown["Bulk scoring"].text  # the review queue: scored rows
        assert str(rows) in shown["Job (bulk parent)"].text  # its inputs card
        # The generated sweep: its trials, some pruned, one failed, and every chart of its study drawn.
        counts = sweep.counts
        assert counts["SUCCEEDED"] >= 2 and counts["PRUNED"] >= 1 and counts["FAILED"] == 1, counts
        trials = shown[f"Sweep ({generated.sweep_trials} trials)"]
        assert f"{generated.sweep_trials} / {generated.sweep_trials}" in trials.text  # trials ended
        assert f"{sweep.best.value:.4f}" in trials.text  # type: ignore[union-attr]
        assert f"Best: trial {sweep.best.number}, {sweep.best.job_id}" in trials.text  # type: ignore[union-attr]
        assert " drawn once " not in trials.text  # no chart left out for want of trials
        assert trials.charts == 5  # best so far, per epoch, per parameter, parallel coordinates, importances
    print("\nfirst render (s), cold server:  page | 1000 jobs")
    for name, seconds in results[1000].items():
        print(f"  {name:20s} {seconds:6.2f}")

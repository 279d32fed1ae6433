"""The Sweeps page, run with Streamlit's AppTest against a sweep of real trials on the real MNIST: its
trials table (each row linked to the trial's job page), best trial, and the study's charts."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.dashboard.conftest import copy_env, new_database
from tests.dashboard.test_pages import figures, metrics, open_page, table_with

pytestmark = pytest.mark.slow

TRIALS = 7


@dataclass(frozen=True)
class SweptDatabase:
    database: Path
    artifacts: Path
    sweep_id: str


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[SweptDatabase]:
    """A database holding one finished sweep, its trials run here one after another as workers run them."""
    from cnnq.cli.app import main
    from cnnq.db.session import session_scope
    from cnnq.db.status import JobStatus
    from cnnq.db.tables import Job
    from cnnq.lifecycle.claim import execute_job
    from cnnq.settings import get_settings

    root = tmp_path_factory.mktemp("sweep-dashboard")
    with new_database(root, redis_server):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main([
                "sweep", "--model", "lenet", "--dataset", "mnist", "--limit", "500", "--epochs", "3",
                "--num-workers", "0", "--device", "cpu", "--trials", str(TRIALS), "--prune", "median",
                "--param", "lr=loguniform:1e-3:0.5", "--param", "batch_size=choice:32,64", "--json",
            ])  # fmt: skip
        assert code == 0
        sweep_id = json.loads(out.getvalue())["id"]
        while True:
            with session_scope() as session:
                if session.get(Job, sweep_id).status.finished:  # type: ignore[union-attr]
                    break
                queued = session.scalars(
                    select(Job.id).where(Job.parent_id == sweep_id, Job.status == JobStatus.QUEUED)
                ).first()
            assert queued is not None, "a running sweep with no trial queued"
            execute_job(queued, worker="test-worker@dashboard")
        settings = get_settings()
        database = Path(settings.database_url.removeprefix("sqlite:///"))
    yield SweptDatabase(database, settings.artifact_dir, sweep_id)


@pytest.fixture
def sweep_env(swept: SweptDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's own copy of the swept database; yields the sweep's id."""
    from cnnq.db.session import dispose_engines
    from cnnq.settings import reload_settings

    for key, value in copy_env(swept, tmp_path).items():  # type: ignore[arg-type]
        monkeypatch.setenv(key, value)
    reload_settings()
    yield swept.sweep_id
    dispose_engines()
    reload_settings()


def test_the_sweeps_page_tables_the_trials_and_draws_the_study(sweep_env: str) -> None:
    from cnnq.db.session import session_scope
    from cnnq.db.tables import Job
    from cnnq.sweeps.report import summarize

    sweep_id = sweep_env
    with session_scope() as session:
        summary = summarize(session, session.get(Job, sweep_id))  # type: ignore[arg-type]
    app = open_page("screens/sweeps.py", sweep=sweep_id)

    trials = table_with(app, "val_accuracy")
    assert list(trials["trial"]) == [t.number for t in summary.trials]
    assert list(trials["job"]) == [f"job?job={t.job_id}" for t in summary.trials]
    assert {"lr", "batch_size", "status", "epochs"} <= set(trials.columns)
    assert sorted(trials["trial"]) == list(range(TRIALS))
    assert metrics(app)["trials ended"] == f"{TRIALS} / {TRIALS}"
    assert metrics(app)["best val_accuracy"] == f"{summary.best.value:.4f}"  # type: ignore[union-attr]
    drawn = figures(app)
    assert {
        "Best val_accuracy so far",
        "val_accuracy per epoch (pruned trials stop early)",
        "val_accuracy against each parameter",
        "Parallel coordinates",
        "Parameter importances for val_accuracy",
    } <= set(drawn)
    assert len(drawn["Best val_accuracy so far"].data) >= 2  # each trial's value, and the best so far


def test_a_trials_job_page_links_back_to_its_sweep(sweep_env: str) -> None:
    app = open_page("screens/job.py", job=f"{sweep_env}.000")
    header = " ".join(block.value for block in app.markdown)
    assert f"sweep [{sweep_env}](sweeps?sweep={sweep_env})" in header

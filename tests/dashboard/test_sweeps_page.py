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
from tests.dashboard.test_pages import metrics, open_page, table_with
from tests.dashboard.vega import charts

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
    from cnnq.db.orm import Job
    from cnnq.db.session import session_scope
    from cnnq.db.status import JobStatus
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
    from cnnq.db.orm import Job
    from cnnq.db.session import session_scope
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
    drawn = charts(app)
    assert {
        "Best val_accuracy so far",
        "val_accuracy per epoch (pruned trials stop early)",
        "val_accuracy against each parameter",
        "Parallel coordinates",
        "Parameter importances for val_accuracy",
    } <= set(drawn)
    # Each succeeded trial's value, and the best so far, from cnnq's tables.
    succeeded = sorted((t.number, t.value) for t in summary.trials if t.status == "SUCCEEDED")
    history = drawn["Best val_accuracy so far"].curves()
    assert list(zip(history["val_accuracy"].x, history["val_accuracy"].y, strict=True)) == succeeded
    assert history["best so far"].y.iloc[-1] == summary.best.value  # type: ignore[union-attr]
    # Each trial's value per epoch, as its pruner saw it: a pruned trial stops at its pruning epoch.
    (per_epoch,) = drawn["val_accuracy per epoch (pruned trials stop early)"].marks_of("line")
    epochs = per_epoch.data.groupby("trial")[per_epoch.encoding["x"]["field"]].max()
    for trial in summary.trials:
        if trial.pruned_at is not None:
            assert epochs[trial.number] == trial.pruned_at
            assert set(per_epoch.data.loc[per_epoch.data["trial"] == trial.number, "status"]) == {"PRUNED"}
    # The metric against each parameter: one panel per parameter, a point per succeeded trial.
    slices = drawn["val_accuracy against each parameter"].curves()
    assert set(slices) == {"lr", "batch_size"}
    by_number = {t.number: t for t in summary.trials}
    for name, points in slices.items():
        assert points.panel == name and sorted(points.data["trial"]) == [n for n, _ in succeeded]
        for trial, x, y in zip(points.data["trial"], points.x, points.y, strict=True):
            expected = by_number[trial].values[name]
            assert x == (str(expected) if name == "batch_size" else expected)  # a choice: its label
            assert y == by_number[trial].value
    (lines,) = drawn["Parallel coordinates"].marks_of("line")
    assert set(lines.data["axis"]) == {"val_accuracy", "lr", "batch_size"}
    assert lines.data["position"].between(0, 1).all() and set(lines.data["trial"]) == {
        n for n, _ in succeeded
    }
    (importances,) = drawn["Parameter importances for val_accuracy"].marks_of("bar")
    assert set(importances.y) == {"lr", "batch_size"} and importances.x.sum() == pytest.approx(1.0)


def test_a_trials_job_page_links_back_to_its_sweep(sweep_env: str) -> None:
    app = open_page("screens/job.py", job=f"{sweep_env}.000")
    header = " ".join(block.value for block in app.markdown)
    assert f"sweep [{sweep_env}](sweeps?sweep={sweep_env})" in header

"""`cnnq sweep` on the real MNIST, real `cnnq worker` processes, a real Redis, SQLite and PostgreSQL: an ASHA
sweep prunes, creates every trial once and keeps the recipe's score as a floor; workers SIGKILLed mid-trial
lose no trial; a cancelled sweep leaves nothing queued or running."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cnnq.db.orm import Job, Metric, SweepTrial, Worker
from cnnq.db.records import find_artifact, log_lines
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from tests.conftest import finished, job_of, wait_until
from tests.sweeps.test_trials import study_trials

pytestmark = pytest.mark.slow

TRIALS = 12
EPOCHS = 4


def sweep_args(mnist_root: Path, limit: int, *extra: str) -> list[str]:
    return [
        "sweep", "--model", "lenet", "--dataset", "mnist", "--data-root", str(mnist_root),
        "--limit", str(limit), "--epochs", str(EPOCHS), "--num-workers", "0", "--device", "cpu",
        "--trials", str(TRIALS), "--parallel", "2", "--seed", "1",
        "--param", "lr=loguniform:1e-3:1", "--param", "momentum=uniform:0.5:0.99", *extra, "--json",
    ]  # fmt: skip


def start_sweep(cli: Any, *args: str) -> str:
    result = cli(*args)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)["id"]


def trial_rows(sweep_id: str) -> dict[int, dict[str, Any]]:
    """Each trial's number, job, status, attempts, best val_accuracy and epochs, read from the tables."""
    with session_scope() as session:
        rows = session.execute(
            select(SweepTrial.number, Job.id, Job.status, Job.attempts)
            .join(Job, Job.id == SweepTrial.job_id)
            .where(SweepTrial.sweep_id == sweep_id)
        ).all()
        found = {}
        for number, job_id, status, attempts in rows:
            values = session.scalars(
                select(Metric.value).where(Metric.job_id == job_id, Metric.name == "val_accuracy")
            ).all()
            epochs = session.scalar(
                select(func.count()).where(Metric.job_id == job_id, Metric.name == "epoch_seconds")
            )
            found[number] = {
                "job": job_id, "status": str(status), "attempts": attempts,
                "value": max(values) if values else None, "epochs": epochs,
            }  # fmt: skip
    return found


def assert_every_trial_once(sweep_id: str) -> dict[int, dict[str, Any]]:
    rows = trial_rows(sweep_id)
    assert sorted(rows) == list(range(TRIALS))
    with session_scope() as session:
        jobs = session.scalars(select(Job.id).where(Job.parent_id == sweep_id)).all()
    assert sorted(jobs) == sorted(row["job"] for row in rows.values())
    states = {t.number: t.state.name for t in study_trials(sweep_id)}
    assert sorted(states) == list(range(TRIALS)) and "RUNNING" not in states.values()
    return rows


def test_an_asha_sweep_prunes_and_keeps_the_recipe_as_a_floor(  # type: ignore[no-untyped-def]
    queue_env, start_workers, cli, mnist_root: Path
) -> None:
    start_workers("--cpu", "--concurrency", "2", expect=2)
    waited = cli(*sweep_args(mnist_root, 1000), "--wait")  # a progress line per change, then the sweep
    assert waited.code == 0, waited.stderr
    sweep_id = json.loads(waited.stdout)["id"]
    assert f"{sweep_id} SUCCEEDED {TRIALS}/{TRIALS} trials" in waited.stderr
    sweep = job_of(sweep_id)
    assert sweep.status == JobStatus.SUCCEEDED, sweep.message

    rows = assert_every_trial_once(sweep_id)
    pruned = [row for row in rows.values() if row["status"] == "PRUNED" and row["epochs"] < EPOCHS]
    assert len(pruned) >= TRIALS // 3, rows
    assert {row["status"] for row in rows.values()} <= {"SUCCEEDED", "PRUNED"}
    best = max((row for row in rows.values() if row["status"] == "SUCCEEDED"), key=lambda row: row["value"])
    assert best["value"] >= rows[0]["value"]  # trial 0 is the recipe
    assert sweep.result["best_value"] == best["value"]

    shown = json.loads(cli("sweep", "show", sweep_id, "--json").stdout)
    assert {t["number"]: (t["job_id"], t["status"], t["value"], t["epochs"]) for t in shown["trials"]} == {
        number: (row["job"], row["status"], row["value"], row["epochs"]) for number, row in rows.items()
    }
    assert shown["best"]["value"] == best["value"] and sum(shown["pruned_at"].values()) == len(pruned)
    values = [t["value"] for t in shown["trials"]]
    assert values == sorted(values, reverse=True)
    table = cli("sweep", "show", sweep_id)
    assert table.code == 0 and f"pruned: {len(pruned)} of {TRIALS} trials" in table.stdout
    best_json = json.loads(cli("sweep", "best", sweep_id, "--json").stdout)
    assert best_json["job"] == sweep.result["best_job"]
    listed = json.loads(cli("jobs", "--status", "PRUNED", "--json").stdout)
    assert sorted(job["id"] for job in listed) == sorted(row["job"] for row in pruned)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_workers_killed_mid_trial_lose_no_trial(  # type: ignore[no-untyped-def]
    queue_env, start_workers, cli, mnist_root: Path
) -> None:
    for _ in range(2):
        start_workers("--cpu")
    # The median pruner leaves its first five trials alone: trials with epochs to go after a checkpoint.
    sweep_id = start_sweep(cli, *sweep_args(mnist_root, 2000, "--prune", "median"))
    killed: list[str] = []
    for _ in range(2):
        victim: dict[str, Any] = {}

        def mid_trial(victim: dict[str, Any] = victim) -> bool:
            """A trial past its first checkpoint with epochs to go, and the worker running it."""
            with session_scope() as session:
                for job in session.scalars(
                    select(Job).where(Job.parent_id == sweep_id, Job.status == JobStatus.RUNNING)
                ):
                    if (
                        job.id in killed
                        or job.progress > 0.6
                        or find_artifact(session, job.id, "checkpoint") is None
                    ):
                        continue
                    pid = session.scalar(select(Worker.pid).where(Worker.name == job.worker))
                    victim.update(job=job.id, pid=pid)
                    return pid is not None
            return False

        wait_until(mid_trial, 180, "a trial in the middle of its epochs")
        os.kill(victim["pid"], signal.SIGKILL)
        killed.append(victim["job"])
        start_workers("--cpu")  # the sweep goes on with two workers
    wait_until(lambda: finished(sweep_id), 300, "the sweep to end")
    assert job_of(sweep_id).status == JobStatus.SUCCEEDED

    rows = assert_every_trial_once(sweep_id)
    assert "FAILED" not in {row["status"] for row in rows.values()}
    by_job = {row["job"]: row for row in rows.values()}
    for job_id in killed:
        with session_scope() as session:
            lines = [line.line for line in log_lines(session, job_id)]
        assert by_job[job_id]["attempts"] == 2, lines
        assert any(line.startswith("resuming from") for line in lines), lines


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_cancelled_sweep_leaves_no_trial_queued_or_running(  # type: ignore[no-untyped-def]
    queue_env, start_workers, cli, mnist_root: Path
) -> None:
    start_workers("--cpu", "--concurrency", "2", expect=2)
    sweep_id = start_sweep(cli, *sweep_args(mnist_root, 3000, "--prune", "none"))

    def one_ended_and_one_in_its_first_epoch() -> bool:
        """So that the cancel finds a trial to stop: one with all but its first epoch still to run (a
        trial near its end could finish before the cancel reaches it)."""
        rows = trial_rows(sweep_id).values()
        return any(row["status"] == "SUCCEEDED" for row in rows) and any(
            row["status"] == "RUNNING" and row["epochs"] == 0 for row in rows
        )

    wait_until(one_ended_and_one_in_its_first_epoch, 180, "a trial to end while another starts")
    assert cli("cancel", sweep_id).code == 0
    wait_until(lambda: finished(sweep_id), 60, "the sweep to stop")
    assert job_of(sweep_id).status == JobStatus.CANCELLED
    rows = trial_rows(sweep_id)
    assert len(rows) < TRIALS
    assert not {row["status"] for row in rows.values()} & {"QUEUED", "RUNNING"}
    assert "CANCELLED" in {row["status"] for row in rows.values()}
    assert "RUNNING" not in {t.state.name for t in study_trials(sweep_id)}

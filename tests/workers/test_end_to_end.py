"""Real Redis, real `cnnq worker` processes, SQLite and PostgreSQL: jobs run, fail, are cancelled, and
survive a worker killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cnnq.db.jobs import get_job, request_cancel
from cnnq.db.orm import Metric
from cnnq.db.records import artifacts_of, find_artifact, log_lines, metric_history
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.jobs.spec import TrainSpec
from cnnq.lifecycle.submit import Placement, submit_job
from tests.conftest import finished, job_of, wait_until

pytestmark = pytest.mark.slow


def mnist_spec(root: Path, **changes: object) -> TrainSpec:
    options: dict[str, object] = {
        "model": "lenet",
        "dataset": "mnist",
        "data_root": root,
        "limit": 512,
        "epochs": 2,
        "batch_size": 64,
        "num_workers": 0,
        "device": "cpu",
    }
    return TrainSpec.model_validate(options | changes)


def children_of_pid(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_jobs_succeed_fail_and_cancel(queue_env, start_workers, mnist_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    start_workers("--cpu")
    good = submit_job(mnist_spec(mnist_root), Placement())
    broken = submit_job(mnist_spec(tmp_path / "no-data"), Placement(queue="cpu"))
    long = submit_job(mnist_spec(mnist_root, limit=4096, epochs=50), Placement())

    wait_until(lambda: finished(good) and finished(broken), 180, "the first two jobs")
    wait_until(
        lambda: job_of(long).status == JobStatus.RUNNING and job_of(long).progress > 0, 120, "the long job"
    )
    with session_scope() as s:
        request_cancel(s, long)
    asked = time.monotonic()
    wait_until(lambda: finished(long), 30, "the cancelled job to stop")
    assert time.monotonic() - asked < 15

    with session_scope() as s:
        ok = get_job(s, good)
        assert ok.status == JobStatus.SUCCEEDED and ok.attempts == 1 and ok.progress == 1.0
        history = metric_history(s, good)
        assert [row["epoch"] for row in history] == [1, 2]
        assert {"train_loss", "val_accuracy"} <= set(history[0])
        kinds = {a.kind for a in artifacts_of(s, good)}
        assert {"checkpoint", "model"} <= kinds
        assert Path(find_artifact(s, good, "model").uri).is_file()  # type: ignore[union-attr]

        bad = get_job(s, broken)
        assert bad.status == JobStatus.FAILED and bad.error_type and bad.error_message
        assert "Traceback" in (bad.error_traceback or "")

        cancelled = get_job(s, long)
        assert cancelled.status == JobStatus.CANCELLED


def test_a_sigkilled_worker_leaves_a_job_another_worker_finishes_from_its_checkpoint(  # type: ignore[no-untyped-def]
    queue_env, start_workers, mnist_root: Path
) -> None:
    first = start_workers("--cpu")
    job_id = submit_job(mnist_spec(mnist_root, limit=8192, epochs=6), Placement())

    def checkpointed() -> bool:
        with session_scope() as s:
            return find_artifact(s, job_id, "checkpoint") is not None

    wait_until(checkpointed, 180, "the epoch-1 checkpoint")
    [celery_pid] = first.celery_pids()
    job_processes = children_of_pid(celery_pid)
    assert job_processes, "the job runs in a child process of the worker"
    os.kill(celery_pid, signal.SIGKILL)
    wait_until(
        lambda: not any(alive(pid) for pid in job_processes), 10, "the job process to die with its worker"
    )
    assert job_of(job_id).status == JobStatus.RUNNING

    start_workers("--cpu")
    wait_until(lambda: finished(job_id), 240, "the job to finish on the second worker")

    with session_scope() as s:
        job = get_job(s, job_id)
        assert job.status == JobStatus.SUCCEEDED, job.error_message
        assert job.attempts == 2
        lines = [line.line for line in log_lines(s, job_id)]
        assert sum(line.startswith("started on") for line in lines) == 2
        per_epoch = s.execute(
            select(Metric.name, Metric.step, func.count())
            .where(Metric.job_id == job_id, Metric.name == "train_loss")
            .group_by(Metric.name, Metric.step)
        ).all()
        assert sorted((step, count) for _, step, count in per_epoch) == [(e, 1) for e in range(1, 7)]
        duplicates = s.execute(
            select(Metric.name, Metric.step)
            .where(Metric.job_id == job_id)
            .group_by(Metric.name, Metric.step)
            .having(func.count() > 1)
        ).all()
        assert duplicates == []
    assert any(line.startswith("resuming from") for line in lines), lines


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: in the tests beside it
def test_a_worker_keeps_its_job_process_for_the_next_job_and_replaces_a_dead_one(  # type: ignore[no-untyped-def]
    queue_env, start_workers, mnist_root: Path
) -> None:
    worker = start_workers("--cpu")
    [celery_pid] = worker.celery_pids()

    def standby() -> list[int]:
        """Live job processes (multiprocessing's resource tracker is a child of the worker too)."""
        return [pid for pid in children_of_pid(celery_pid) if alive(pid) and b"spawn_main" in cmdline(pid)]

    def process_of(job_id: str) -> int:
        with session_scope() as s:
            [line] = [entry.line for entry in log_lines(s, job_id) if entry.line.startswith("started on")]
        return int(line.rsplit("process ", 1)[1].rstrip(")"))

    wait_until(lambda: len(standby()) == 1, 60, "the standby job process")
    [first] = standby()
    os.kill(first, signal.SIGKILL)  # a standby that died idle: the next job gets a fresh process
    wait_until(lambda: first not in standby(), 10, "the killed standby to be gone")
    job = submit_job(mnist_spec(mnist_root, epochs=1), Placement())
    wait_until(lambda: finished(job), 180, "the job after the standby died")
    assert job_of(job).status == JobStatus.SUCCEEDED
    second = process_of(job)
    assert second != first
    wait_until(lambda: standby() == [second], 30, "the job's process, kept for the next job")

    job = submit_job(mnist_spec(mnist_root, epochs=1), Placement())
    wait_until(lambda: finished(job), 180, "the job in the kept process")
    assert job_of(job).status == JobStatus.SUCCEEDED
    assert process_of(job) == second
    assert standby() == [second]

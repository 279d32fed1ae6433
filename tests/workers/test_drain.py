"""Two CPU workers drain a queue of 20 small jobs: none lost, none run twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from cnnq.db.orm import Job
from cnnq.db.records import log_lines
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.jobs.spec import TrainSpec
from cnnq.lifecycle.submit import Placement, submit_job

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_workers_drain_twenty_jobs(queue_env, start_workers, mnist_root: Path) -> None:  # type: ignore[no-untyped-def]
    spec = TrainSpec(
        model="lenet", dataset="mnist", data_root=mnist_root, limit=64, epochs=1, num_workers=0, device="cpu"
    )
    ids = {submit_job(spec, Placement()) for _ in range(20)}
    assert len(ids) == 20
    launcher = start_workers("--cpu", "--concurrency", "2", expect=2)
    deadline = time.monotonic() + 840
    while True:
        with session_scope() as s:
            jobs = list(s.scalars(select(Job).where(Job.id.in_(ids))))
        if all(job.status.finished for job in jobs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [j.id for j in jobs if j.status != JobStatus.SUCCEEDED] == []
    assert {j.attempts for j in jobs} == {1}
    assert len({j.worker for j in jobs}) == 2, "both workers took jobs"
    assert {j.worker for j in jobs} <= {n for n in _worker_names(launcher)}
    with session_scope() as s:
        for job_id in ids:
            lines = [line.line for line in log_lines(s, job_id)]
            assert sum(line.startswith("started on") for line in lines) == 1, (job_id, lines)
            assert sum(line == "succeeded" for line in lines) == 1, (job_id, lines)


def _worker_names(launcher) -> set[str]:  # type: ignore[no-untyped-def]
    from cnnq.db.orm import Worker

    with session_scope() as s:
        return {w.name for w in s.scalars(select(Worker)) if f"-{launcher.process.pid}@" in w.name}

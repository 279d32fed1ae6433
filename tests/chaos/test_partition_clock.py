"""Partitions and clocks.

- A worker frozen with SIGSTOP (its Celery process and its job process: as a paused VM or a host cut
  off from the database looks to the others) past the lost threshold: another worker takes its job
  and finishes it. When the frozen one continues, its superseded attempt must write nothing more
  (no metric, log line, artifact, status or checkpoint file) and stop itself within seconds.
- Workers whose host clocks are an hour ahead and an hour behind (libfaketime), next to a worker with
  the right time: staleness is judged by the database server's clock, so no healthy job is re-queued.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.jobs import submit, train_args
from tests.chaos.processes import FAKETIME_LIBRARY, alive, faketime_env
from tests.chaos.rows import (
    all_finished,
    artifact_rows,
    file_hashes,
    job,
    jobs,
    log_lines,
    metric_rows,
    outcome_report,
    wait_for,
)

pytestmark = pytest.mark.slow

SUPERSEDED_GRACE_SECONDS = 8


def _snapshot(url: str, job_id: str, folder: Path) -> dict[str, Any]:
    row = job(url, job_id)
    return {
        "job": (row.status, row.attempts, row.worker, row.error_type),
        "metrics": metric_rows(url, job_id),
        "logs": log_lines(url, job_id),
        "artifacts": artifact_rows(url, job_id),
        "files": file_hashes(folder),
    }


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changed = []
    for key in before:
        if before[key] != after[key]:
            if isinstance(before[key], list):
                added = [item for item in after[key] if item not in before[key]]
                removed = [item for item in before[key] if item not in after[key]]
                changed.append(f"{key}: +{added[:4]} -{removed[:4]}")
            elif isinstance(before[key], dict):
                keys = set(before[key]) | set(after[key])
                differing = sorted(k for k in keys if before[key].get(k) != after[key].get(k))
                changed.append(f"{key}: {differing}")
            else:
                changed.append(f"{key}: {before[key]} -> {after[key]}")
    return changed


@pytest.mark.timeout(420)
def test_a_frozen_worker_that_continues_writes_nothing_after_its_job_moved_on(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, mnist_root: Path
) -> None:
    url = chaos_env["CNNQ_DATABASE_URL"]
    pair = [workers.start(wait=False), workers.start(wait=False)]
    for worker in pair:
        workers.wait_registered(worker)
    job_id = submit(cli, *train_args(mnist_root, limit=4096, epochs=5))
    wait_for(
        lambda: (
            job(url, job_id).status == "RUNNING"
            and any(kind == "checkpoint" for kind, *_ in artifact_rows(url, job_id))
        ),
        150,
        "the job's first checkpoint",
    )
    first_worker = job(url, job_id).worker or ""
    [frozen] = [worker for worker in pair if f"-{worker.pid}@" in first_worker]
    [celery_pid] = frozen.celery_pids(url)
    job_process = frozen.running_job_process(celery_pid)
    assert job_process is not None, "found no job process under the Celery worker that runs the job"

    frozen_pids = frozen.pause()
    frozen_at = time.monotonic()
    wait_for(
        lambda: all_finished(url, [job_id]),
        180,
        "another worker to take the frozen worker's job over and finish it",
        every=0.1,
    )
    moved = job(url, job_id)
    assert moved.status == "SUCCEEDED" and moved.worker != first_worker, outcome_report(url, [job_id])
    folder = Path(chaos_env["CNNQ_ARTIFACT_ROOT"]) / job_id
    before = _snapshot(url, job_id, folder)
    frozen_for = time.monotonic() - frozen_at

    frozen.resume(frozen_pids)
    time.sleep(SUPERSEDED_GRACE_SECONDS)
    after = _snapshot(url, job_id, folder)
    assert _changes(before, after) == [], (
        f"the superseded attempt (frozen {frozen_for:.0f}s, then continued) wrote after the job moved on"
    )
    assert not alive(job_process), (
        f"the superseded job process {job_process} still runs {SUPERSEDED_GRACE_SECONDS}s after it continued"
    )


def _faketime_shift(offset: str) -> float:
    """How far `offset` moves a Python child's wall clock here (checks that libfaketime works)."""
    probe = "import time; print(time.time())"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
        env={**os.environ, **faketime_env(offset)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip()) - time.time()


@pytest.mark.timeout(420)
def test_workers_with_clocks_an_hour_off_never_requeue_healthy_jobs(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, mnist_root: Path
) -> None:
    if not FAKETIME_LIBRARY.exists():
        pytest.skip(f"libfaketime not installed ({FAKETIME_LIBRARY}); scripts/setup installs `faketime`")
    assert abs(_faketime_shift("+1h") - 3600) < 60 and abs(_faketime_shift("-1h") + 3600) < 60
    url = chaos_env["CNNQ_DATABASE_URL"]
    clocks = {"+1h": faketime_env("+1h"), "-1h": faketime_env("-1h"), "right": {}}
    started = {name: workers.start(env=env, wait=False) for name, env in clocks.items()}
    for worker in started.values():
        workers.wait_registered(worker)
    for name in ("+1h", "-1h"):
        [celery_pid] = started[name].celery_pids(url)
        maps = Path(f"/proc/{celery_pid}/maps").read_text()
        assert "libfaketime" in maps, f"the {name} worker's Celery process does not run under libfaketime"

    ids = [submit(cli, *train_args(mnist_root, limit=8192, epochs=3)) for _ in clocks]
    wait_for(lambda: all_finished(url, ids), 240, "the three jobs")
    rows = jobs(url, ids)
    report = outcome_report(url, ids)
    ran_on = {
        name: [row.id for row in rows if f"-{worker.pid}@" in (row.worker or "")]
        for name, worker in started.items()
    }
    requeued = {job_id: [line for line in log_lines(url, job_id) if "re-queued" in line] for job_id in ids}
    assert [row.describe() for row in rows if (row.status, row.attempts) != ("SUCCEEDED", 1)] == [], (
        f"a healthy job was re-queued or failed (workers' clocks +1h, -1h and right; jobs by clock "
        f"{ran_on}):\n{report}\nre-queue lines: {requeued}"
    )
    assert all(lines == [] for lines in requeued.values()), requeued
    assert all(ran_on.values()), f"each clock's worker should have run a job: {ran_on}"

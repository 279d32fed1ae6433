"""Hung jobs are caught.

- A job process frozen with SIGSTOP (as a deadlocked DataLoader or a CUDA hang looks) while its worker
  keeps running and beating: after CNNQ_STALL_SECONDS (8 s here) without progress the worker kills
  it and re-queues the job, which then finishes (attempts 2).
- A job submitted with `--timeout 5` that would train for minutes ends FAILED with error_type
  "Timeout" within seconds of its limit.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.chaos.jobs import submit, train_args
from tests.chaos.processes import alive, signal_pids, stopped
from tests.chaos.rows import all_finished, job, log_lines, metric_counts, outcome_report, query, wait_for

pytestmark = pytest.mark.slow

STALL_SECONDS = 8


@pytest.mark.timeout(300)
def test_a_frozen_job_process_is_killed_after_the_stall_time_and_the_job_finishes(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, mnist_root: Path
) -> None:
    assert chaos_env["CNNQ_STALL_SECONDS"] == str(STALL_SECONDS)
    url = chaos_env["CNNQ_DATABASE_URL"]
    worker = workers.start()
    job_id = submit(cli, *train_args(mnist_root, limit=4096, epochs=3))
    # After its first epoch: by then a standby process (if the worker keeps one) is idle, so the
    # busiest child of the Celery process is the one training.
    wait_for(lambda: ("train_loss", 1) in metric_counts(url, job_id), 120, "the job's first epoch")
    [celery_pid] = worker.celery_pids(url)
    wait_for(lambda: worker.running_job_process(celery_pid) is not None, 30, "the job process")
    job_process = worker.running_job_process(celery_pid)
    assert job_process is not None

    signal_pids([job_process], signal.SIGSTOP)
    frozen_at = time.monotonic()
    wait_for(lambda: stopped(job_process), 5, f"job process {job_process} to stop on SIGSTOP")
    wait_for(
        lambda: not alive(job_process),
        STALL_SECONDS + 30,
        f"the frozen job process {job_process} to be killed (stall time {STALL_SECONDS}s); "
        f"job: {job(url, job_id).describe()}",
    )
    killed_after = time.monotonic() - frozen_at
    assert killed_after >= STALL_SECONDS - 1, f"killed after {killed_after:.1f}s, before the stall time"
    assert alive(celery_pid) and worker.running(), "the worker itself must keep running"

    wait_for(lambda: all_finished(url, [job_id]), 180, "the re-queued job to finish")
    row = job(url, job_id)
    assert (row.status, row.attempts) == ("SUCCEEDED", 2), (
        f"wanted SUCCEEDED on a second attempt: {outcome_report(url, [job_id])}; "
        f"log: {log_lines(url, job_id)[-6:]}"
    )


@pytest.mark.timeout(300)
def test_a_job_past_its_timeout_fails_with_timeout(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, mnist_root: Path
) -> None:
    url = chaos_env["CNNQ_DATABASE_URL"]
    workers.start()
    result = cli("submit", *train_args(mnist_root, limit=8192, epochs=50), "--timeout", "5", "--json")
    assert result.code == 0, f"cnnq submit train --timeout 5 exited {result.code}: {result.stderr}"
    job_id = json.loads(result.stdout)["id"]
    wait_for(lambda: job(url, job_id).status != "QUEUED", 90, "the job to start")
    wait_for(lambda: all_finished(url, [job_id]), 60, "the job to be stopped by its 5s timeout")
    row = job(url, job_id)
    assert (row.status, row.error_type) == ("FAILED", "Timeout"), outcome_report(url, [job_id])
    [(started, finished)] = query(url, "SELECT started_at, finished_at FROM jobs WHERE id = :j", j=job_id)
    ran = (finished - started).total_seconds()
    assert 4 <= ran <= 30, f"the job ran {ran:.1f}s with --timeout 5"

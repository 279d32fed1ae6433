"""The CLI with real workers: `submit --wait` shows live progress and the final metrics, `cancel` stops a
running job, `run` runs one in-process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cnnq.db.jobs import get_job
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus

pytestmark = pytest.mark.slow

TRAIN = ["train", "--model", "lenet", "--dataset", "mnist", "--batch-size", "64", "--num-workers", "0"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_wait_shows_progress_and_cancel_stops_a_running_job(  # type: ignore[no-untyped-def]
    cli, queue_env, start_workers, mnist_root: Path
) -> None:
    start_workers("--cpu")
    # Long enough (seconds, even on a fast machine) for the progress display to show it RUNNING.
    result = cli("submit", *TRAIN, "--data-root", mnist_root, "--limit", "8192", "--epochs", "5", "--wait")
    assert result.code == 0, result.stderr + result.stdout
    progress_lines = [line for line in result.stdout.splitlines() if line.startswith("train-")]
    assert any(" RUNNING " in line for line in progress_lines), result.stdout
    assert progress_lines[-1].split()[1] == "SUCCEEDED"
    assert "val_accuracy" in result.stdout and "test_accuracy" in result.stdout

    submitted = cli(
        "submit", *TRAIN, "--data-root", mnist_root, "--limit", "4096", "--epochs", "50", "--json"
    )
    job_id = json.loads(submitted.stdout)["id"]
    deadline = time.monotonic() + 120
    while True:
        with session_scope() as s:
            job = get_job(s, job_id)
            if job.status == JobStatus.RUNNING and job.progress > 0:
                break
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    assert cli("cancel", job_id).code == 0
    waited = cli("wait", job_id, "--timeout", "30", "--json")
    assert waited.code == 1 and json.loads(waited.stdout)["status"] == "CANCELLED"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_trains_in_this_process(cli, queue_env, mnist_root: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("run", *TRAIN, "--data-root", mnist_root, "--limit", "256", "--epochs", "1", "--json")
    assert result.code == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "SUCCEEDED" and job["queue"] == "local" and job["history"][0]["epoch"] == 1
    assert {a["kind"] for a in job["artifacts"]} >= {"model", "checkpoint"}

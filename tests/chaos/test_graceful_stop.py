"""Graceful stops re-queue: `cnnq down` (then `cnnq up`), Ctrl-C on a foreground `cnnq worker`, and a
second signal that stops at once.

A graceful stop asks the running job to stop at its next batch; the job goes back to QUEUED without
spending its attempt (attempts stays 0) and the next worker resumes it from its checkpoint, so it
ends SUCCEEDED with attempts == 1. A second signal stops the worker at once; the job is still
re-queued (never FAILED, never left RUNNING for a reaper to find).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.jobs import cnnq_process, submit, train_args
from tests.chaos.processes import alive, descendants, kill_process_groups
from tests.chaos.rows import (
    all_finished,
    artifact_rows,
    epoch_metric_problems,
    job,
    log_lines,
    outcome_report,
    wait_for,
)
from tests.conftest import free_port

pytestmark = pytest.mark.slow

EPOCHS = 6
STOP_SECONDS = 30
"""How long a graceful stop may take: the current batch, a checkpoint, the re-queue, the exit."""


def _long_job(cli, mnist_root: Path) -> str:  # type: ignore[no-untyped-def]
    return submit(cli, *train_args(mnist_root, limit=8192, epochs=EPOCHS))


def _wait_mid_training(url: str, job_id: str) -> None:
    """Until the job runs with its first checkpoint written (epochs left to go)."""

    def checkpointed() -> bool:
        return job(url, job_id).status == "RUNNING" and any(
            kind == "checkpoint" for kind, *_ in artifact_rows(url, job_id)
        )

    wait_for(checkpointed, 150, f"job {job_id} to checkpoint its first epoch")


def _assert_requeued_unspent(url: str, job_id: str, how: str) -> None:
    row = job(url, job_id)
    assert (row.status, row.attempts) == ("QUEUED", 0), (
        f"after {how}: wanted QUEUED with its attempt given back (attempts 0), got {row.describe()}; "
        f"log: {log_lines(url, job_id)[-5:]}"
    )


def _assert_resumed_once(url: str, job_id: str) -> None:
    wait_for(lambda: all_finished(url, [job_id]), 180, f"job {job_id} to finish on the next worker")
    row = job(url, job_id)
    assert (row.status, row.attempts) == ("SUCCEEDED", 1), (
        f"wanted SUCCEEDED with attempts 1: {outcome_report(url, [job_id])}"
    )
    lines = log_lines(url, job_id)
    assert any(line.startswith("resuming from") for line in lines), f"not resumed from a checkpoint: {lines}"
    assert epoch_metric_problems(url, job_id, EPOCHS) == []


@pytest.fixture
def local_stack(chaos_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`cnnq up`'s environment (home in tmp, the private Redis and database, a free dashboard port);
    `cnnq down` at the end, and anything `up` started and `down` left is killed."""
    env = {"CNNQ_DASHBOARD_PORT": str(free_port())}
    run = Path(chaos_env["CNNQ_HOME"]) / "run"
    yield env
    started: list[int] = []
    for pid_file in run.glob("*.pid") if run.is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().strip())
            started += [pid, *descendants(pid)]
    cnnq_process("down", env=env, timeout=90)
    kill_process_groups([pid for pid in started if alive(pid)])


@pytest.mark.timeout(420)
def test_cnnq_down_then_up_mid_training_resumes_the_job_without_spending_an_attempt(  # type: ignore[no-untyped-def]
    chaos_env, local_stack, cli, mnist_root: Path
) -> None:
    url = chaos_env["CNNQ_DATABASE_URL"]
    up = cnnq_process("up", env=local_stack, timeout=180)
    assert up.returncode == 0, f"cnnq up: {up.stdout}{up.stderr}"
    worker_pid = int((Path(chaos_env["CNNQ_HOME"]) / "run" / "worker.pid").read_text())
    job_id = _long_job(cli, mnist_root)
    _wait_mid_training(url, job_id)
    tree = [worker_pid, *descendants(worker_pid)]

    down = cnnq_process("down", env=local_stack, timeout=120)
    assert down.returncode == 0, f"cnnq down: {down.stdout}{down.stderr}"
    assert [pid for pid in tree if alive(pid)] == [], "processes of the worker outlived `cnnq down`"
    _assert_requeued_unspent(url, job_id, "`cnnq down`")

    again = cnnq_process("up", env=local_stack, timeout=180)
    assert again.returncode == 0, f"cnnq up again: {again.stdout}{again.stderr}"
    _assert_resumed_once(url, job_id)


@pytest.mark.timeout(420)
def test_ctrl_c_requeues_the_job_and_a_second_signal_stops_at_once_and_still_requeues_it(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, mnist_root: Path
) -> None:
    """One job through three workers: Ctrl-C on the first (a terminal's SIGINT to its whole group) gives
    the job back; the second resumes it and gets two SIGTERMs (stop at once: the job is re-queued all
    the same); the third finishes it, having spent one attempt in all."""
    url = chaos_env["CNNQ_DATABASE_URL"]
    foreground = workers.start()
    job_id = _long_job(cli, mnist_root)
    _wait_mid_training(url, job_id)

    foreground.signal_terminal_group(signal.SIGINT)
    code = foreground.wait_exit(STOP_SECONDS)
    assert code is not None, f"the worker still runs {STOP_SECONDS}s after Ctrl-C: {foreground.output()}"
    _assert_requeued_unspent(url, job_id, "Ctrl-C")

    second = workers.start()
    wait_for(
        lambda: job(url, job_id).status == "RUNNING" and f"-{second.pid}@" in (job(url, job_id).worker or ""),
        120,
        f"job {job_id} to resume on the second worker",
    )
    tree = second.tree()
    second.signal(signal.SIGTERM)
    time.sleep(0.3)
    second.signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = second.wait_exit(15)
    assert code is not None, f"the worker still runs 15s after a second SIGTERM: {second.output()}"
    wait_for(lambda: not any(alive(pid) for pid in tree), 10, "the worker's processes to exit")
    stopped_in = time.monotonic() - signalled
    row = job(url, job_id)
    assert (row.status, row.attempts) == ("QUEUED", 0), (
        f"after two SIGTERMs the worker stopped in {stopped_in:.1f}s and left {row.describe()} "
        f"(wanted QUEUED, attempts 0); log: {log_lines(url, job_id)[-5:]}"
    )

    workers.start()
    _assert_resumed_once(url, job_id)

"""Kill storm: two workers, eight training jobs and a sharded bulk job, twenty SIGKILLs.

Each kill takes a worker's whole process tree down at once (every process group in it: supervisor,
Celery worker, job and standby processes) and a fresh worker replaces it, so that two stay up. Every
other kill strikes a random worker at a random moment (while it starts, waits, claims or trains); the
rest strike a worker that runs a job, a random moment into it. The seed fixes the choices.
Afterwards every job must end SUCCEEDED: none lost, none stranded QUEUED or RUNNING, none run twice
(exactly one metric row per epoch and name, exactly one prediction row per input).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.chaos.jobs import make_bulk_inputs, submit, train_args
from tests.chaos.processes import WorkerProcess
from tests.chaos.rows import (
    all_finished,
    epoch_metric_problems,
    jobs,
    outcome_report,
    prediction_problems,
)

pytestmark = pytest.mark.slow

SEED = 20261130
KILLS = 20
TRAINING_JOBS = 8
EPOCHS = 3
DRAIN_SECONDS = 180


@pytest.mark.timeout(480)
def test_twenty_sigkills_lose_no_job_and_run_none_twice(  # type: ignore[no-untyped-def]
    chaos_env, use_settings, workers, cli, mnist_root: Path, tmp_path: Path
) -> None:
    use_settings(CNNQ_MAX_ATTEMPTS="30")  # attempts are not what this test is about
    url = chaos_env["CNNQ_DATABASE_URL"]
    rng = random.Random(SEED)
    bulk = make_bulk_inputs(tmp_path, count=16)
    live = [workers.start(wait=False), workers.start(wait=False)]
    for worker in live:
        workers.wait_registered(worker)
    training = [submit(cli, *train_args(mnist_root, epochs=EPOCHS)) for _ in range(TRAINING_JOBS)]
    bulk_id = submit(cli, *bulk.args(shard_size=8))
    ids = [*training, bulk_id]

    storm_started = time.monotonic()
    kills: list[str] = []
    for number in range(KILLS):
        if number % 2:  # any moment: starting, idle, claiming, running, finishing
            time.sleep(rng.uniform(0.5, 4.0))
            slot = rng.randrange(len(live))
        else:  # mid-job: a worker that runs one, a random moment into it
            slot = _slot_running_a_job(url, ids, live, rng)
            time.sleep(rng.uniform(0.0, 2.0))
        victim = live[slot]
        running = _jobs_running_on(url, ids, victim.pid)
        groups = victim.kill_hard()
        at = time.monotonic() - storm_started
        kills.append(f"{at:.0f}s worker {victim.pid} ({len(groups)} groups, running {running or 'nothing'})")
        live[slot] = workers.start(wait=False)
    storm_seconds = time.monotonic() - storm_started

    deadline = time.monotonic() + DRAIN_SECONDS
    while not all_finished(url, ids) and time.monotonic() < deadline:
        time.sleep(1.0)
    rows = jobs(url, ids)
    report = outcome_report(url, ids)
    context = (
        f"after {KILLS} SIGKILLs over {storm_seconds:.0f}s and {DRAIN_SECONDS}s to drain:\n{report}\n"
        f"kills: {'; '.join(kills)}"
    )
    assert all_finished(url, ids), f"jobs stranded {context}\nlive workers' logs:\n" + "\n".join(
        worker.output(1500) for worker in live
    )
    assert [row.describe() for row in rows if row.status != "SUCCEEDED"] == [], context
    assert len(rows) == len(ids) + 2, f"expected {len(ids)} jobs and 2 shards: {context}"

    duplicated_or_missing = {
        job_id: problems for job_id in training if (problems := epoch_metric_problems(url, job_id, EPOCHS))
    }
    assert duplicated_or_missing == {}, f"metric rows not one per epoch and name: {duplicated_or_missing}"
    assert prediction_problems(url, bulk_id, bulk.inputs) == [], "prediction rows not one per input"


def _jobs_running_on(url: str, ids: list[str], supervisor_pid: int) -> list[str]:
    return [
        row.id
        for row in jobs(url, ids)
        if row.status == "RUNNING" and f"-{supervisor_pid}@" in (row.worker or "")
    ]


def _slot_running_a_job(
    url: str, ids: list[str], live: list[WorkerProcess], rng: random.Random, wait: float = 30.0
) -> int:
    """The index of a live worker that runs a job (waiting for one up to `wait` s; else any)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not all_finished(url, ids):
        busy = [slot for slot, worker in enumerate(live) if _jobs_running_on(url, ids, worker.pid)]
        if busy:
            return rng.choice(busy)
        time.sleep(0.2)
    return rng.randrange(len(live))

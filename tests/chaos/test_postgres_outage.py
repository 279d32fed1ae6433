"""PostgreSQL stopped for 30 s mid-epoch (`pg_ctl stop -m immediate`, then started again).

The running job must wait the outage out (its writes retried) and end SUCCEEDED with its history
whole; a `cnnq submit` during the outage must say in one line that the database is down, exit 1 and
queue nothing; afterwards the same worker must take new jobs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.jobs import cnnq_process, submit, train_args
from tests.chaos.rows import (
    all_finished,
    epoch_metric_problems,
    job,
    metric_counts,
    outcome_report,
    wait_for,
)

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 30
EPOCHS = 4


@pytest.mark.timeout(420)
def test_a_30s_postgres_outage_mid_epoch_fails_nothing_and_queues_nothing(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, durable_redis, private_postgres, mnist_root: Path
) -> None:
    url = chaos_env["CNNQ_DATABASE_URL"]
    worker = workers.start()
    [worker_name] = worker.celery_names(url)
    running = submit(cli, *train_args(mnist_root, limit=8192, epochs=EPOCHS))
    wait_for(lambda: ("train_loss", 1) in metric_counts(url, running), 120, "the job's first epoch")
    assert job(url, running).status == "RUNNING"

    private_postgres.stop("immediate")
    stopped_at = time.monotonic()
    # (a recovery pass may have re-sent the running job's message)
    waiting_before = durable_redis.waiting_jobs()
    submit_args = train_args(mnist_root, limit=1024, epochs=1)
    refused = cnnq_process("submit", *submit_args, timeout=OUTAGE_SECONDS + 60)
    stderr_lines = refused.stderr.strip().splitlines()
    queued_by_submit = durable_redis.waiting_jobs() - waiting_before
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
    private_postgres.start()
    outage = time.monotonic() - stopped_at

    assert refused.returncode == 1, (
        f"cnnq submit during the outage exited {refused.returncode}; stderr:\n{refused.stderr[-3000:]}"
    )
    assert len(stderr_lines) == 1 and "Traceback" not in refused.stderr, (
        f"wanted one line, got {len(stderr_lines)}:\n{refused.stderr[-3000:]}"
    )
    assert "database" in stderr_lines[0].lower(), f"the line does not name the database: {stderr_lines[0]}"
    assert not queued_by_submit, (
        f"a submit that had no database queued {dict(queued_by_submit)} in Redis "
        f"(waiting before it: {dict(waiting_before)})"
    )

    wait_for(lambda: all_finished(url, [running]), 180, f"the job to end after a {outage:.0f}s outage")
    row = job(url, running)
    assert row.status == "SUCCEEDED", f"after a {outage:.0f}s outage: {outcome_report(url, [running])}"
    assert epoch_metric_problems(url, running, EPOCHS) == [], "the job's history is not one row per epoch"

    assert worker.running(), f"the worker did not survive the outage: {worker.output()}"
    later = submit(cli, *train_args(mnist_root, limit=1024, epochs=1))
    wait_for(lambda: all_finished(url, [later]), 120, "a job submitted after the outage")
    after = job(url, later)
    assert after.status == "SUCCEEDED", outcome_report(url, [later])
    assert after.worker == worker_name, f"ran on {after.worker}, not on the worker that lived through it"

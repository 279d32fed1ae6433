"""Redis faults with jobs queued: a crash (SIGKILL, then a restart on its append-only file) and a wipe
(FLUSHALL, as a failover to an empty replica or a restart without persistence would leave it).

Five training jobs and a two-shard bulk job wait while a worker is busy with a longer job. After the
fault every job must still end SUCCEEDED (after a wipe, only the SQL rows remember them: the recovery
pass sends their messages again), and a job submitted afterwards, by a fresh `cnnq submit`, must run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.jobs import cnnq_process, make_bulk_inputs, submit, train_args
from tests.chaos.rows import all_finished, job, jobs, outcome_report, prediction_problems, wait_for

pytestmark = pytest.mark.slow

QUEUED_JOBS = 5
FINISH_SECONDS = 150


def _queue_behind_a_busy_worker(workers, cli, mnist_root: Path, tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    """A worker busy with a longer job, five training jobs and a two-shard bulk job queued behind it."""
    busy = workers.start()
    # Long enough to outlast the seven submits behind it, however fast a warm worker starts it.
    long_job = submit(cli, *train_args(mnist_root, limit=4096, epochs=6))
    wait_for(lambda: job(url, long_job).status == "RUNNING", 90, "the long job to start")
    bulk = make_bulk_inputs(tmp_path, count=8)
    queued = [submit(cli, *train_args(mnist_root, limit=512, epochs=2)) for _ in range(QUEUED_JOBS)]
    bulk_id = submit(cli, *bulk.args(shard_size=4))
    return busy, long_job, queued, bulk_id, bulk


def _assert_waiting(redis, queued: list[str], url: str, bulk_id: str) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Each queued job and shard has its message waiting in Redis (a re-send may add a second)."""
    shards = [row.id for row in jobs(url, [bulk_id]) if row.parent_id == bulk_id]
    assert len(shards) == 2, f"the bulk job should have 2 shards: {shards}"
    waiting = redis.waiting_jobs()
    missing = [job_id for job_id in [*queued, *shards] if not waiting[job_id]]
    assert missing == [], f"no message waits in Redis for {missing}; waiting: {dict(waiting)}"
    return waiting


def _submit_afterwards_and_finish(mnist_root: Path, url: str) -> str:
    """`cnnq submit` in a new process (as a user would, after the fault) and the job it queued runs."""
    done = cnnq_process("submit", *train_args(mnist_root, limit=512, epochs=1), "--json")
    assert done.returncode == 0, f"submit after the fault exited {done.returncode}: {done.stderr[-2000:]}"
    later = json.loads(done.stdout)["id"]
    wait_for(lambda: all_finished(url, [later]), 120, f"the job submitted after the fault ({later})")
    assert job(url, later).status == "SUCCEEDED", outcome_report(url, [later])
    return later


def _finish_all(url: str, ids: list[str], what: str) -> None:
    deadline = time.monotonic() + FINISH_SECONDS
    while not all_finished(url, ids) and time.monotonic() < deadline:
        time.sleep(1.0)
    report = outcome_report(url, ids)
    assert all_finished(url, ids), f"{what}: jobs stranded after {FINISH_SECONDS}s:\n{report}"
    assert [row.describe() for row in jobs(url, ids) if row.status != "SUCCEEDED"] == [], report


@pytest.mark.timeout(420)
def test_a_redis_crash_replayed_from_its_append_only_file_loses_no_job(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, durable_redis, mnist_root: Path, tmp_path: Path
) -> None:
    url = chaos_env["CNNQ_DATABASE_URL"]
    busy, long_job, queued, bulk_id, bulk = _queue_behind_a_busy_worker(
        workers, cli, mnist_root, tmp_path, url
    )
    waiting_before = _assert_waiting(durable_redis, queued, url, bulk_id)

    durable_redis.crash()
    time.sleep(2.0)
    durable_redis.start()
    replayed = set(durable_redis.waiting_jobs()) | set(durable_redis.unacked_jobs())
    assert set(waiting_before) <= replayed, (
        f"the append-only file lost the messages of {sorted(set(waiting_before) - replayed)}"
    )

    workers.start()
    ids = [long_job, *queued, bulk_id]
    _finish_all(url, ids, "after a Redis crash")
    assert prediction_problems(url, bulk_id, bulk.inputs) == []
    assert busy.running(), f"the worker that was busy during the crash stopped: {busy.output()}"
    _submit_afterwards_and_finish(mnist_root, url)


@pytest.mark.timeout(420)
def test_a_wiped_redis_loses_no_job_the_recovery_pass_sends_them_again(  # type: ignore[no-untyped-def]
    chaos_env, workers, cli, durable_redis, mnist_root: Path, tmp_path: Path
) -> None:
    url = chaos_env["CNNQ_DATABASE_URL"]
    busy, long_job, queued, bulk_id, bulk = _queue_behind_a_busy_worker(
        workers, cli, mnist_root, tmp_path, url
    )
    _assert_waiting(durable_redis, queued, url, bulk_id)

    durable_redis.wipe()
    assert durable_redis.waiting() == 0 and durable_redis.unacked() == 0, "FLUSHALL left messages"

    workers.start()
    ids = [long_job, *queued, bulk_id]
    _finish_all(url, ids, "after FLUSHALL (only the SQL rows remember the queued jobs)")
    assert prediction_problems(url, bulk_id, bulk.inputs) == []
    assert busy.running(), f"the worker that was busy during the wipe stopped: {busy.output()}"
    _submit_afterwards_and_finish(mnist_root, url)

"""Claiming, re-delivery, reaping, bulk parents and submit atomicity, against a real Redis and database
(no worker processes: these call the worker's functions directly)."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from cnnq.db.jobs import create_job, get_job, transition, update_job
from cnnq.db.orm import Job
from cnnq.db.records import log_lines, metric_history
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.tables import utcnow
from cnnq.errors import ServiceUnavailable
from cnnq.jobs.reporter import JobSuperseded
from cnnq.jobs.spec import TrainSpec
from cnnq.lifecycle.bulk import settle_parent
from cnnq.lifecycle.claim import Claim, claim_job, execute_job, failure_fields, finish_claim, give_back
from cnnq.lifecycle.queues import priority_keys
from cnnq.lifecycle.recovery import Recovery
from cnnq.lifecycle.sql_reporter import SqlReporter
from cnnq.lifecycle.submit import Placement, submit_job

SPEC = {"kind": "train", "model": "lenet", "dataset": "mnist", "data_root": "/nowhere", "epochs": 1}


def _waiting(url: str, queue: str) -> int:
    client = redis.Redis.from_url(url)
    return sum(client.llen(key) for key in priority_keys(queue))


def _job(job_id: str) -> Job:
    with session_scope() as s:
        return get_job(s, job_id)


def test_a_finished_job_delivered_again_does_nothing(queue_env: dict[str, str]) -> None:
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu").id
        transition(s, job_id, JobStatus.RUNNING, worker="w1")
        transition(s, job_id, JobStatus.SUCCEEDED)
    assert execute_job(job_id, worker="w2") == JobStatus.SUCCEEDED
    job = _job(job_id)
    assert (job.status, job.worker, job.attempts) == (JobStatus.SUCCEEDED, "w1", 0)


def test_a_job_running_on_a_live_worker_is_left_alone(queue_env: dict[str, str]) -> None:
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu").id
        transition(s, job_id, JobStatus.RUNNING, worker="w1", attempts=1)
    assert execute_job(job_id, worker="w2") == JobStatus.RUNNING
    assert (_job(job_id).worker, _job(job_id).attempts) == ("w1", 1)


def test_a_job_that_raises_fails_with_its_error(queue_env: dict[str, str]) -> None:
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu").id
    assert execute_job(job_id, worker="w1") == JobStatus.FAILED
    job = _job(job_id)
    assert job.error_type and job.error_message and "Traceback" in (job.error_traceback or "")
    assert len((job.error_traceback or "").splitlines()) <= 20
    with session_scope() as s:
        lines = [line.line for line in log_lines(s, job_id)]
    assert lines[0] == f"started on w1 (attempt 1, process {os.getpid()})" and lines[-1].startswith("failed")


def test_a_lost_job_is_given_up_after_max_attempts(queue_env: dict[str, str]) -> None:
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu").id
        update_job(s, job_id, attempts=3)
    assert execute_job(job_id, worker="w1") == JobStatus.FAILED
    job = _job(job_id)
    assert job.error_type == "TooManyAttempts" and "3 attempts" in (job.error_message or "")


def test_a_message_without_a_row_does_nothing(queue_env: dict[str, str]) -> None:
    assert execute_job("train-never1", worker="w1") is None


def test_only_one_recovery_pass_requeues_a_lost_job_and_sends_it_again(queue_env: dict[str, str]) -> None:
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu", priority=3).id
        transition(s, job_id, JobStatus.RUNNING, worker="dead@host", attempts=1)
        update_job(s, job_id, heartbeat_at=utcnow() - timedelta(minutes=1))
        fresh = create_job(s, kind="train", spec=SPEC, queue="cpu").id
        transition(s, fresh, JobStatus.RUNNING, worker="alive@host", attempts=1)
    first, second = Recovery().run(), Recovery().run()
    assert (first.requeued, first.sent) == ([job_id], [job_id])
    assert (second.requeued, second.sent) == ([], [])
    job = _job(job_id)
    assert job.status == JobStatus.QUEUED and job.message == "re-queued: worker dead@host stopped beating"
    assert _job(fresh).status == JobStatus.RUNNING
    assert _waiting(queue_env["CNNQ_BROKER_URL"], "cpu") == 1


def test_a_queued_job_whose_message_is_gone_is_sent_again(  # type: ignore[no-untyped-def]
    use_settings, queue_env: dict[str, str], tmp_path: Path
) -> None:
    """The outbox: Redis lost the message (wiped, or a worker took it and died): the recovery pass re-sends it
    once CNNQ_REQUEUE_AFTER_SECONDS have passed, and leaves alone a job whose message still waits."""
    use_settings(CNNQ_REQUEUE_AFTER_SECONDS="1")
    spec = TrainSpec(model="lenet", dataset="mnist", data_root=tmp_path, device="cpu")
    lost, waiting = submit_job(spec, Placement()), submit_job(spec, Placement())
    client = redis.Redis.from_url(queue_env["CNNQ_BROKER_URL"])
    assert client.llen("cpu:9") == 2  # priority 0 travels as step 9
    client.rpop("cpu:9")  # the first message sent: as if a worker took it and died before claiming
    recovery = Recovery()
    assert recovery.run().resent == []  # sent under a second ago
    time.sleep(1.2)
    assert recovery.run().resent == []  # seen missing just now: a live worker may be claiming it
    time.sleep(1.2)
    assert recovery.run().resent == [lost]  # missing for a second: lost
    assert sorted(_job_id_in(m) for m in client.lrange("cpu:9", 0, -1)) == sorted([lost, waiting])
    client.flushall()  # Redis wiped: both are sent again once missing long enough
    time.sleep(1.2)
    assert recovery.run().resent == []
    time.sleep(1.2)
    assert sorted(recovery.run().resent) == sorted([lost, waiting])


def _job_id_in(message: bytes) -> str:
    return json.loads(message)["headers"]["argsrepr"].strip("[]'")


def test_a_superseded_run_writes_nothing_more(queue_env: dict[str, str]) -> None:
    """Fencing: once a job is re-queued and claimed again, the first run's reporter refuses every write."""
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu").id
    first = claim_job(job_id, "w1")
    assert isinstance(first, Claim) and first.token == 1
    stale = SqlReporter(job_id, first.token)
    stale.metrics(1, {"val_accuracy": 0.5})
    with session_scope() as s:
        update_job(s, job_id, heartbeat_at=utcnow() - timedelta(minutes=5))
    assert Recovery().run().requeued == [job_id]
    second = claim_job(job_id, "w2")
    assert isinstance(second, Claim) and second.token == 2
    for write in (
        lambda: stale.metrics(1, {"val_accuracy": 0.9}),
        lambda: stale.log("late"),
        lambda: stale.progress(1.0, "late"),
        stale.check_owner,
    ):
        with pytest.raises(JobSuperseded):
            write()
    assert finish_claim(job_id, first.token, target=JobStatus.FAILED, error_type="X") == JobStatus.RUNNING
    SqlReporter(job_id, second.token).metrics(1, {"val_accuracy": 0.7})
    with session_scope() as s:
        assert metric_history(s, job_id) == [{"epoch": 1, "val_accuracy": 0.7}]
        assert not any("late" in line.line for line in log_lines(s, job_id))
    assert finish_claim(job_id, second.token, target=JobStatus.SUCCEEDED) == JobStatus.SUCCEEDED
    job = _job(job_id)
    assert (job.status, job.worker, job.attempts, job.claims) == (JobStatus.SUCCEEDED, "w2", 2, 2)


def test_a_graceful_stop_gives_the_attempt_back(queue_env: dict[str, str]) -> None:
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu").id
    claim = claim_job(job_id, "w1")
    assert isinstance(claim, Claim)
    status = give_back(job_id, claim.token, "re-queued: its worker is stopping", spend=False)
    assert status == JobStatus.QUEUED
    job = _job(job_id)
    assert (job.attempts, job.claims, job.sent_at) == (0, 1, None)
    assert Recovery().run().sent == [job_id]


def test_a_bulk_parent_follows_its_shards(queue_env: dict[str, str]) -> None:
    with session_scope() as s:
        parent = create_job(s, kind="infer", spec={"kind": "infer"}, queue="cpu").id
        shards = [
            create_job(s, kind="infer", spec={"kind": "infer"}, queue="cpu", parent_id=parent).id
            for _ in range(2)
        ]
        transition(s, shards[0], JobStatus.RUNNING, worker="w")
        settle_parent(s, parent)
    job = _job(parent)
    assert job.status == JobStatus.RUNNING and job.heartbeat_at is None
    with session_scope() as s:
        transition(s, shards[0], JobStatus.SUCCEEDED)
        settle_parent(s, parent)
    assert _job(parent).progress == pytest.approx(0.5)
    with session_scope() as s:
        transition(s, shards[1], JobStatus.RUNNING, worker="w")
        transition(s, shards[1], JobStatus.FAILED, error_type="X", error_message="boom")
        settle_parent(s, parent)
    job = _job(parent)
    assert job.status == JobStatus.FAILED and "1 of 2 shards failed" in (job.error_message or "")


def test_submit_records_and_queues_with_priority(queue_env: dict[str, str], tmp_path: Path) -> None:
    spec = TrainSpec(model="lenet", dataset="mnist", data_root=tmp_path, device="cpu")
    urgent = submit_job(spec, Placement(priority=9))
    normal = submit_job(spec, Placement())
    client = redis.Redis.from_url(queue_env["CNNQ_BROKER_URL"])
    assert client.llen("cpu") == 1 and client.llen("cpu:9") == 1  # step 0 is popped first
    assert _job(urgent).queue == "cpu" and _job(normal).status == JobStatus.QUEUED


def test_submit_to_a_dead_broker_records_nothing(use_settings, database_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    use_settings(CNNQ_DATABASE_URL=database_url, CNNQ_BROKER_URL="redis://:hunter2@127.0.0.1:1/0")
    spec = TrainSpec(model="lenet", dataset="mnist", data_root=tmp_path)
    with pytest.raises(ServiceUnavailable) as refused:
        submit_job(spec, Placement())
    assert "hunter2" not in str(refused.value) and "redis://:***@127.0.0.1:1/0" in str(refused.value)
    with session_scope() as s:
        assert s.query(Job).count() == 0


def test_a_big_inference_becomes_a_bulk_job_of_shards(queue_env: dict[str, str], tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from cnnq.jobs.spec import InferSpec

    images = tmp_path / "images"
    images.mkdir()
    for index in range(5):
        Image.new("L", (8, 8), color=index * 40).save(images / f"{index}.png")
    model = tmp_path / "best.pt"
    model.write_bytes(b"not used here")
    spec = InferSpec(model_from="train-x", model_file=model, input=str(images), shard_size=2, device="cpu")
    parent = submit_job(spec, Placement())
    with session_scope() as s:
        shards = list(s.scalars(select(Job).where(Job.parent_id == parent).order_by(Job.id)))
    assert [len(job.spec["inputs"]) for job in shards] == [2, 2, 1]
    assert sorted(p for job in shards for p in job.spec["inputs"]) == sorted(str(p) for p in images.iterdir())
    assert _waiting(queue_env["CNNQ_BROKER_URL"], "cpu") == 3  # the shards, not the parent

    shown = json.loads(cli("show", parent, "--json").stdout)
    assert shown["shards"] == {"QUEUED": 3} and shown["predictions"]["inputs"] == 0
    assert cli("cancel", parent).code == 0
    assert _job(parent).status == JobStatus.CANCELLED
    assert {_job(job.id).status for job in shards} == {JobStatus.CANCELLED}


def test_a_running_job_whose_worker_stopped_beating_is_shown_lost(queue_env: dict[str, str], cli) -> None:  # type: ignore[no-untyped-def]
    with session_scope() as s:
        job_id = create_job(s, kind="train", spec=SPEC, queue="cpu").id
        transition(s, job_id, JobStatus.RUNNING, worker="gone@host")
        update_job(s, job_id, heartbeat_at=utcnow() - timedelta(minutes=5))
    assert "RUNNING (lost)" in cli("jobs").stdout
    assert json.loads(cli("show", job_id, "--json").stdout)["lost"] is True


def test_cuda_out_of_memory_fails_at_once_with_advice() -> None:
    """Retrying the same batch size fails again: the error says what to change instead."""
    fields = failure_fields(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert fields["error_type"] == "RuntimeError"
    assert "smaller --batch-size" in fields["error_message"]
    assert "Tried to allocate 2.00 GiB" in fields["error_message"]

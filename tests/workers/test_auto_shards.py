"""`--shard-size auto` against a real Redis and SQLite or PostgreSQL: the rest of a bulk job is sharded
from its first shard's measured speed and the live workers, exactly once however many planners race, and
a planner that dies before sending (or before committing) leaves it to the recovery pass. The last test runs a
bulk job through real `cnnq worker` processes from submit to SUCCEEDED."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from PIL import Image
from sqlalchemy import func, select, update

from cnnq.db.jobs import children_of, get_job, request_cancel, transition
from cnnq.db.orm import Prediction, UnshardedInputs, Worker
from cnnq.db.records import log_lines
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.tables import utcnow
from cnnq.db.workers import register_worker
from cnnq.jobs.inputs import list_inputs
from cnnq.jobs.spec import InferSpec
from cnnq.lifecycle.auto_shards import MAX_SHARD, plan_rest, shard_count, shard_the_rest
from cnnq.lifecycle.bulk import first_shard_size, settle_parent
from cnnq.lifecycle.cancel import cancel_job
from cnnq.lifecycle.claim import execute_job
from cnnq.lifecycle.queues import priority_keys
from cnnq.lifecycle.recovery import Recovery
from cnnq.lifecycle.submit import Placement, submit_job
from tests.conftest import wait_until

BATCH = 2
FIRST = 8
"""With batches of 2, an auto-sized job's first shard holds 4 batches: 8 inputs."""


@pytest.mark.parametrize(
    ("inputs", "per_second", "workers", "seconds", "smallest", "expected"),
    [
        (99_000, 3000.0, 2, 30.0, 64, 2),  # fast model: one shard per worker
        (99_000, 100.0, 2, 30.0, 64, 34),  # 33 shards of 30 s, rounded up to equal rounds of 2
        (99_000, 3000.0, 0, 30.0, 64, 2),  # no live worker seen: counted as one (the planner's own)
        (10, 100.0, 4, 0.001, 64, 1),  # under a batch: one shard, however many workers
        (1_000_000, 1e9, 1, 30.0, 64, 1_000_000 // MAX_SHARD),
        (36, None, 3, 30.0, 2, 3),  # speed unknown: one shard per worker
    ],
)
def test_shard_count(  # type: ignore[no-untyped-def]
    inputs, per_second, workers, seconds, smallest, expected
) -> None:
    assert shard_count(inputs, per_second, workers, seconds, smallest) == expected


@pytest.mark.parametrize(
    ("inputs", "batch_size", "expected"),
    [(100_000, 64, 1000), (10_000, 64, 500), (3000, 64, 256), (3000, 512, 1000)],
)
def test_the_first_shard_is_a_twentieth_of_the_job_at_least_four_batches_at_most_1000(
    inputs: int, batch_size: int, expected: int
) -> None:
    assert first_shard_size(inputs, batch_size) == expected


def _images(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.new("L", (8, 8), color=index % 250).save(folder / f"{index:03d}.png")
    return list_inputs(str(folder))


def _bulk_job(tmp_path: Path, count: int) -> tuple[str, list[str]]:
    """An auto-sized bulk job of `count` images on the cpu queue (its model is never loaded here)."""
    inputs = _images(tmp_path / "images", count)
    model = tmp_path / "best.pt"
    model.write_bytes(b"not used here")
    spec = InferSpec(model_from="train-x", model_file=model, input=str(tmp_path / "images"), batch_size=BATCH)
    return submit_job(spec, Placement(queue="cpu")), inputs


def _first_shard_scored(parent: str, per_second: float) -> None:
    """The first shard SUCCEEDED, its rows inserted two at a time, one insert every 2 / `per_second` s."""
    with session_scope() as s:
        first = children_of(s, parent)[0]
        transition(s, first.id, JobStatus.RUNNING, worker="w", claimed_at=utcnow())
        start = utcnow()
        for index, path in enumerate(first.spec["inputs"]):
            at = start + timedelta(seconds=(index // 2) * 2 / per_second)
            s.add(Prediction(job_id=first.id, bulk_id=parent, input=path, label="a", score=0.5, time=at))
        transition(s, first.id, JobStatus.SUCCEEDED)


def _live_workers(count: int, queue: str = "cpu") -> None:
    """`count` workers serving `queue` that beat just now, and three that must not count."""
    with session_scope() as s:
        for index in range(count):
            register_worker(s, f"live{index}@h", hostname="h", pid=index, queues=["default", queue])
        for name, queues in (("other@h", ["gpu"]), ("lost@h", [queue]), ("stopped@h", [queue])):
            register_worker(s, name, hostname="h", pid=90, queues=queues)
        s.execute(
            update(Worker).where(Worker.name == "lost@h").values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
        s.execute(update(Worker).where(Worker.name == "stopped@h").values(stopped_at=utcnow()))


def _waiting(url: str, queue: str = "cpu") -> list[str]:
    """The job ids of the messages waiting in `queue`, one per message."""
    client = redis.Redis.from_url(url)
    messages = [m for key in priority_keys(queue) for m in client.lrange(key, 0, -1)]
    return sorted(json.loads(m)["headers"]["argsrepr"].strip("[]'") for m in messages)


def _status(job_id: str) -> JobStatus:
    with session_scope() as s:
        return get_job(s, job_id).status


def _shard_paths(parent: str) -> list[list[str]]:
    with session_scope() as s:
        return [child.spec["inputs"] for child in children_of(s, parent)]


def _assert_each_input_in_one_shard(parent: str, inputs: list[str]) -> None:
    planned = [path for paths in _shard_paths(parent) for path in paths]
    assert sorted(planned) == sorted(inputs)


@pytest.mark.parametrize(
    ("workers", "seconds", "shards"),
    [
        (0, "3", 6),  # 2 inputs/s x 3 s: shards of 6 for the other 36 inputs
        (4, "3", 8),  # ... but 4 live workers get equal shares: 8 shards of 4 or 5
        (2, "1000", 2),  # a long target: one shard per live worker
    ],
)
def test_the_rest_is_sharded_by_the_first_shards_speed_and_the_live_workers(  # type: ignore[no-untyped-def]
    use_settings, queue_env, tmp_path: Path, workers: int, seconds: str, shards: int
) -> None:
    use_settings(CNNQ_SHARD_SECONDS=seconds)
    parent, inputs = _bulk_job(tmp_path, FIRST + 36)
    assert [len(paths) for paths in _shard_paths(parent)] == [FIRST]
    assert _waiting(queue_env["CNNQ_BROKER_URL"]) == [f"{parent}.0001"]
    _live_workers(workers)
    _first_shard_scored(parent, per_second=2.0)

    sent = shard_the_rest(parent)
    sizes = [len(paths) for paths in _shard_paths(parent)[1:]]
    assert len(sizes) == shards and sum(sizes) == 36 and max(sizes) - min(sizes) <= 1
    _assert_each_input_in_one_shard(parent, inputs)
    assert sent == [f"{parent}.{index:04d}" for index in range(2, shards + 2)]
    assert _waiting(queue_env["CNNQ_BROKER_URL"]) == sorted([f"{parent}.0001", *sent])
    with session_scope() as s:
        assert s.get(UnshardedInputs, parent) is None
        lines = [line.line for line in log_lines(s, parent)]
    assert lines and lines[-1].startswith("the first shard scored 2 inputs/s; the other 36 inputs go in")
    assert shard_the_rest(parent) == [] and len(_shard_paths(parent)) == shards + 1


def test_a_bulk_parent_waits_for_its_unsharded_inputs(queue_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    parent, _ = _bulk_job(tmp_path, FIRST + 12)
    _first_shard_scored(parent, per_second=2.0)
    with session_scope() as s:
        settle_parent(s, parent)
        job = get_job(s, parent)
        assert job.status == JobStatus.RUNNING
        assert job.progress == pytest.approx(FIRST / (FIRST + 12))
        assert "12 more inputs are sharded once the first shard has measured the speed" in (job.message or "")
    for shard in shard_the_rest(parent):
        with session_scope() as s:
            transition(s, shard, JobStatus.RUNNING, worker="w")
            transition(s, shard, JobStatus.SUCCEEDED)
            settle_parent(s, parent)
    assert _status(parent) == JobStatus.SUCCEEDED


def test_a_failed_or_cancelled_first_shard_ends_the_job_and_its_rest_is_never_sharded(  # type: ignore[no-untyped-def]
    queue_env, tmp_path: Path
) -> None:
    failed, _ = _bulk_job(tmp_path / "a", FIRST + 12)
    with session_scope() as s:
        first = children_of(s, failed)[0].id
        transition(s, first, JobStatus.RUNNING, worker="w")
        transition(s, first, JobStatus.FAILED, error_type="X", error_message="boom")
        settle_parent(s, failed)
    assert shard_the_rest(failed) == []
    with session_scope() as s:
        job = get_job(s, failed)
        assert job.status == JobStatus.FAILED and "12 inputs were never sharded" in (job.error_message or "")
        assert s.get(UnshardedInputs, failed) is None

    # Cancelled while its first shard runs: that shard stops, and the rest is never sharded.
    cancelled, _ = _bulk_job(tmp_path / "b", FIRST + 12)
    with session_scope() as s:
        first = children_of(s, cancelled)[0].id
        transition(s, first, JobStatus.RUNNING, worker="w")
    assert cancel_job(cancelled) == JobStatus.RUNNING
    _finish_running(first, JobStatus.CANCELLED, cancelled)
    assert shard_the_rest(cancelled) == [] and _status(cancelled) == JobStatus.CANCELLED
    assert len(_shard_paths(cancelled)) == 1

    # Cancelled just as its first shard SUCCEEDED: the same.
    late, _ = _bulk_job(tmp_path / "c", FIRST + 12)
    _first_shard_scored(late, per_second=2.0)
    with session_scope() as s:
        request_cancel(s, late)
    assert shard_the_rest(late) == []
    assert cancel_job(late) == JobStatus.CANCELLED and len(_shard_paths(late)) == 1


def _finish_running(job_id: str, status: JobStatus, parent: str) -> None:
    with session_scope() as s:
        transition(s, job_id, status)
        settle_parent(s, parent)


def test_two_planners_at_once_shard_the_rest_once(queue_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    parent, inputs = _bulk_job(tmp_path, FIRST + 36)
    _first_shard_scored(parent, per_second=2.0)

    # One planner holds the parent's lock, its shards written but not committed; a second one (the
    # recovery pass, say) waits for it, then finds the rest taken and does nothing.
    results: dict[str, list[str]] = {}
    with session_scope() as s:
        planned = plan_rest(s, parent)
        assert planned
        second = threading.Thread(target=lambda: results.setdefault("second", shard_the_rest(parent)))
        second.start()
        second.join(timeout=1.0)
        assert second.is_alive(), "the second planner waits for the first one's lock"
    second.join(timeout=60)
    assert results["second"] == []
    assert len(_shard_paths(parent)) == 1 + len(planned)
    _assert_each_input_in_one_shard(parent, inputs)

    # Any number of planners let loose at the same moment: one shards, the others find nothing to do.
    other, other_inputs = _bulk_job(tmp_path / "again", FIRST + 36)
    _first_shard_scored(other, per_second=2.0)
    start = threading.Barrier(4)
    outcomes: list[list[str]] = []

    def plan() -> None:
        start.wait()
        outcomes.append(shard_the_rest(other))

    threads = [threading.Thread(target=plan) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(len(sent) > 0 for sent in outcomes) == [False, False, False, True]
    _assert_each_input_in_one_shard(other, other_inputs)
    sent = next(ids for ids in outcomes if ids)
    assert _waiting(queue_env["CNNQ_BROKER_URL"]).count(sent[0]) == 1


def test_a_planner_that_dies_before_sending_or_committing_leaves_it_to_the_recovery_pass(  # type: ignore[no-untyped-def]
    queue_env, tmp_path: Path
) -> None:
    # Died after committing the shards, before sending them: the next recovery pass sends them.
    parent, inputs = _bulk_job(tmp_path / "a", FIRST + 36)
    _first_shard_scored(parent, per_second=2.0)
    with session_scope() as s:
        planned = [job_id for job_id, _, _ in plan_rest(s, parent)]
    assert _waiting(queue_env["CNNQ_BROKER_URL"]) == [f"{parent}.0001"]
    assert sorted(Recovery().run().sent) == sorted(planned)
    assert _waiting(queue_env["CNNQ_BROKER_URL"]) == sorted([f"{parent}.0001", *planned])

    # Died while sharding, before its transaction committed: nothing was written; the recovery pass shards.
    other, other_inputs = _bulk_job(tmp_path / "b", FIRST + 36)
    _first_shard_scored(other, per_second=2.0)
    with pytest.raises(RuntimeError), session_scope() as s:
        assert plan_rest(s, other)
        raise RuntimeError("the process died here")
    assert len(_shard_paths(other)) == 1
    report = Recovery().run()
    assert report.sharded and len(_shard_paths(other)) == 1 + len(report.sharded)
    _assert_each_input_in_one_shard(other, other_inputs)
    _assert_each_input_in_one_shard(parent, inputs)


def _run_queued_shards(parent: str) -> None:
    """Run the parent's queued shards here, one by one, as they appear (the first one shards the rest)."""
    while True:
        with session_scope() as s:
            queued = [c.id for c in children_of(s, parent) if c.status == JobStatus.QUEUED]
        if not queued:
            return
        for shard in queued:
            assert execute_job(shard) == JobStatus.SUCCEEDED


def _rows(bulk_id: str) -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(Prediction.input).where(Prediction.bulk_id == bulk_id)))


def test_resume_of_an_auto_sized_job_scores_only_what_is_missing(  # type: ignore[no-untyped-def]
    use_settings, queue_env, cli, submit_infer, model_and_archive: tuple[Path, Path]
) -> None:
    use_settings(CNNQ_SHARD_SECONDS="0.001")
    model_file, chest = model_and_archive
    inputs = list_inputs(str(chest))  # 18 images, 2 broken files, 1 text file
    first = submit_infer("--model-from", model_file, "--input", chest, "--batch-size", BATCH)
    [probe] = [paths for paths in _shard_paths(first)]
    assert len(probe) == FIRST
    with session_scope() as s:
        probe_id = children_of(s, first)[0].id
    assert execute_job(probe_id) == JobStatus.SUCCEEDED  # its process shards the rest as it ends
    rest = _shard_paths(first)[1:]
    assert len(rest) == 7 and {len(paths) for paths in rest} == {1, 2}  # 13 in shards of one batch or less
    _assert_each_input_in_one_shard(first, inputs)
    assert cli("cancel", first).code == 0
    assert _status(first) == JobStatus.CANCELLED

    resumed = submit_infer(
        "--model-from", model_file, "--input", chest, "--batch-size", BATCH, "--resume", first
    )
    _run_queued_shards(resumed)
    with session_scope() as s:
        job = get_job(s, resumed)
        assert job.status == JobStatus.SUCCEEDED and job.result["inputs"] == len(inputs)
        assert s.scalar(select(func.count()).where(Prediction.bulk_id == resumed)) == 0
    _assert_each_input_in_one_shard(resumed, [p for p in inputs if p not in probe])
    rows = _rows(first)
    assert len(rows) == len(set(rows)) == len(inputs) and set(rows) == set(inputs)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite: in the tests beside it
def test_an_auto_sized_bulk_job_through_real_workers(  # type: ignore[no-untyped-def]
    use_settings, queue_env, start_workers, submit_infer, model_and_archive: tuple[Path, Path]
) -> None:
    """Default options but the batch size: a first shard, then the rest sharded by its speed over the
    two live workers (a target so short that each holds a single batch), one prediction per input, the
    parent SUCCEEDED."""
    use_settings(CNNQ_SHARD_SECONDS="0.0001")
    start_workers("--cpu", "--concurrency", "2", expect=2)
    model_file, chest = model_and_archive
    inputs = list_inputs(str(chest))
    bulk = submit_infer("--model-from", model_file, "--input", chest, "--batch-size", BATCH)
    wait_until(lambda: _status(bulk).finished, 240, "the bulk job to end")

    with session_scope() as s:
        job = get_job(s, bulk)
        assert job.status == JobStatus.SUCCEEDED, job.message
        shards = children_of(s, bulk)
        assert {shard.status for shard in shards} == {JobStatus.SUCCEEDED}
        assert job.result["shards"] == len(shards) and job.result["inputs"] == len(inputs)
        lines = [line.line for line in log_lines(s, bulk)]
    sizes = [len(shard.spec["inputs"]) for shard in shards]
    assert sizes[0] == FIRST and len(sizes) == 1 + 7 and max(sizes[1:]) == BATCH  # 13 more, a batch each
    assert any(line.startswith("the first shard scored") and "2 live workers" in line for line in lines)
    _assert_each_input_in_one_shard(bulk, inputs)
    rows = _rows(bulk)
    assert len(rows) == len(set(rows)) == len(inputs) and set(rows) == set(inputs)

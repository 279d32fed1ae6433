"""The job commands against a real Redis and database: help, refusals, JSON contract, wait, cancel, logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from cnnq.db.jobs import transition
from cnnq.db.orm import Job
from cnnq.db.records import append_log, record_metrics
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.lifecycle.queues import priority_keys
from cnnq.settings import reload_settings

COMMANDS = [
    [],
    ["submit"],
    ["submit", "train"],
    ["submit", "eval"],
    ["submit", "infer"],
    ["run", "train"],
    ["jobs"],
    ["show"],
    ["logs"],
    ["wait"],
    ["cancel"],
    ["retry"],
    ["worker"],
    ["workers"],
    ["up"],
    ["down"],
    ["doctor"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
]
CONTRACT = {"id", "kind", "status", "spec", "metrics", "history", "artifacts", "error"}


@pytest.fixture
def env(queue_env: dict[str, str]) -> dict[str, str]:
    return queue_env


def waiting(url: str) -> int:
    client = redis.Redis.from_url(url)
    return sum(client.llen(key) for q in ("default", "cpu", "gpu") for key in priority_keys(q))


def job_count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job)) or 0


def train_args(root: Path, *extra: str) -> list[str]:
    return ["submit", "train", "--model", "lenet", "--dataset", "mnist", "--data-root", str(root), *extra]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cnnq")
def test_every_command_has_help(cli, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*command, "--help")
    assert result.code == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--queue", "no such queue"], "--queue"),
        (["--model", "no-such-model"], "no-such-model"),
        (["--batch-size", "-3"], "--batch-size"),
    ],
)
def test_a_bad_submit_is_refused_with_one_line_and_nothing_queued(  # type: ignore[no-untyped-def]
    cli, env, mnist_root: Path, extra: list[str], needle: str
) -> None:
    result = cli(*train_args(mnist_root, *extra))
    assert result.code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert job_count() == 0 and waiting(env["CNNQ_BROKER_URL"]) == 0


def test_a_dead_broker_is_refused_with_a_masked_url(cli, use_settings, mnist_root: Path) -> None:  # type: ignore[no-untyped-def]
    use_settings(CNNQ_BROKER_URL="redis://:topsecret@127.0.0.1:1/0")
    result = cli(*train_args(mnist_root))
    assert result.code == 1  # a service that does not answer, not a refused input
    assert "topsecret" not in result.stderr and "redis://:***@127.0.0.1:1/0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert job_count() == 0


def test_a_database_that_does_not_answer_is_one_line_and_nothing_is_queued(  # type: ignore[no-untyped-def]
    cli, use_settings, broker_url: str, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(CNNQ_BROKER_URL=broker_url)
    monkeypatch.setenv("CNNQ_DATABASE_URL", "postgresql+psycopg://cnnq:s3cret@127.0.0.1:1/cnnq")
    reload_settings()
    result = cli(*train_args(mnist_root))
    assert result.code == 1, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "the database postgresql+psycopg://cnnq:***@127.0.0.1:1/cnnq does not answer" in line
    assert "s3cret" not in line
    assert waiting(broker_url) == 0


def test_submit_json_show_jobs_and_queue_depths(cli, env, mnist_root: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(*train_args(mnist_root, "--priority", "5", "--json"))
    assert result.code == 0, result.stderr
    job = json.loads(result.stdout)
    assert set(job) >= CONTRACT and job["status"] == "QUEUED" and job["spec"]["model"] == "lenet"
    assert job["queue"] == "default" and job["priority"] == 5
    assert waiting(env["CNNQ_BROKER_URL"]) == 1

    shown = json.loads(cli("show", job["id"], "--json").stdout)
    assert shown["id"] == job["id"] and set(shown) >= CONTRACT
    listed = json.loads(cli("jobs", "--json", "--status", "queued", "--kind", "train").stdout)
    assert [j["id"] for j in listed] == [job["id"]]
    assert json.loads(cli("jobs", "--json", "--status", "failed").stdout) == []
    assert cli("jobs", "--status", "sideways").code == 2
    assert cli("jobs", "--since", "yesterday-ish").code == 2
    assert job["id"] in cli("jobs", "--since", "1h").stdout

    workers = json.loads(cli("workers", "--json").stdout)
    assert workers["queues"]["default"] == 1 and workers["workers"] == []
    assert cli("show", "train-nosuch").code == 2


def test_wait_exit_codes_and_cancel(cli, env, mnist_root: Path) -> None:  # type: ignore[no-untyped-def]
    ids = [json.loads(cli(*train_args(mnist_root, "--json")).stdout)["id"] for _ in range(4)]
    good, bad, running, queued = ids
    with session_scope() as s:
        transition(s, good, JobStatus.RUNNING, worker="w")
        record_metrics(s, good, 1, {"val_accuracy": 0.5})
        transition(s, good, JobStatus.SUCCEEDED)
        transition(s, bad, JobStatus.RUNNING, worker="w")
        transition(s, bad, JobStatus.FAILED, error_type="ValueError", error_message="bad thing")
        transition(s, running, JobStatus.RUNNING, worker="w")

    done = cli("wait", good, "--json")
    assert done.code == 0 and json.loads(done.stdout)["metrics"] == {"val_accuracy": 0.5}
    failed = cli("wait", bad)
    assert failed.code == 1 and "bad thing" in failed.stdout
    assert cli("wait", running, "--timeout", "1").code == 124

    asked = cli("cancel", running, "--json")
    assert asked.code == 0 and json.loads(asked.stdout)["status"] == "RUNNING"
    with session_scope() as s:
        assert s.get(Job, running).cancel_requested  # type: ignore[union-attr]
    cancelled = cli("cancel", queued)
    assert cancelled.code == 0 and "cancelled" in cancelled.stdout
    assert json.loads(cli("show", queued, "--json").stdout)["status"] == "CANCELLED"
    assert cli("wait", queued).code == 1


def test_logs_and_retry(cli, env, mnist_root: Path) -> None:  # type: ignore[no-untyped-def]
    job_id = json.loads(cli(*train_args(mnist_root, "--json")).stdout)["id"]
    with session_scope() as s:
        append_log(s, job_id, ["first line", "second line"])
        transition(s, job_id, JobStatus.CANCELLED)
    logs = cli("logs", job_id)
    assert logs.code == 0 and "first line" in logs.stdout and "second line" in logs.stdout
    assert [e["line"] for e in json.loads(cli("logs", job_id, "--json", "--follow").stdout)] == [
        "first line",
        "second line",
    ]
    retried = json.loads(cli("retry", job_id, "--json").stdout)
    assert retried["id"] != job_id and retried["status"] == "QUEUED"
    assert retried["spec"] == json.loads(cli("show", job_id, "--json").stdout)["spec"]
    assert retried["message"] == f"retry of {job_id}"


def test_db_current(cli, env) -> None:  # type: ignore[no-untyped-def]
    result = cli("db", "current", "--json")
    assert result.code == 0 and json.loads(result.stdout)["revision"] is not None


def test_worker_gpus_without_a_gpu_is_refused(cli, env) -> None:  # type: ignore[no-untyped-def]
    from cnnq.workers.gpus import visible_gpus

    if visible_gpus():
        pytest.skip("this host has a GPU")
    result = cli("worker", "--gpus", "all")
    assert result.code == 2 and "no GPU" in result.stderr and "--cpu" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

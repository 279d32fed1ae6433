"""Submit to RUNNING on a warm worker, beside Celery's own round trip of an empty task, in one run.

    (a) Celery: `send_task` of an empty task -> the task starts, on cnnq's Celery app and settings
        (`cnnq.lifecycle.broker.make_app`: JSON, late acks, prefetch 1, priorities; solo pool, one
        worker process), run by a plain Celery worker (`benchmarks/empty_task.py`). The task notes
        `time.time()` as it starts.
    (b) cnnq: the moment before `submit_job` is called -> the job row's `claimed_at` (RUNNING), stamped
        on the database's clock, on a real `cnnq worker --cpu` whose job process is warm (reused from
        the job before, torch imported, the model cached). The job is a tiny inference job: LeNet,
        untrained, on one 28x28 PNG, eager engine.

Both run against the real Redis at 127.0.0.1:6379, in an empty database number of it (chosen here,
flushed after), and a PostgreSQL database created for the run on 127.0.0.1:5432 and dropped after
(`--sqlite`: a SQLite file instead). The two kinds of sample alternate, so that a shared machine's
moods hit both alike; each sample waits until both workers are idle again (the job ended, its
message acknowledged) and `--settle` seconds more, so that every sample meets a warm, idle worker.
The times compare across processes because they are one host's clock: `time.time()` here, the task's
`time.time()` there, and the database server's clock (PostgreSQL's `statement_timestamp()`, SQLite's
`'now'`: both UTC, read back as aware datetimes) for `claimed_at`.

`--profile` then runs the same jobs on a worker process whose hops are timestamped
(`benchmarks/latency_trace.py`) and prints where cnnq's time goes, hop by hop.
Goal (issue 12): (b)'s p50 under 50 ms above (a)'s p50.

    .venv/bin/python benchmarks/submit_latency.py                  # 50 of each, PostgreSQL
    .venv/bin/python benchmarks/submit_latency.py --profile        # and where the time goes
    .venv/bin/python benchmarks/submit_latency.py --sqlite --jobs 20
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from statistics import median, quantiles

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from empty_task import EMPTY_TASK, STARTED_KEY  # noqa: E402
from latency_trace import TRACE_ENV, trace_submit  # noqa: E402

REDIS = "redis://127.0.0.1:6379"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
EMPTY_QUEUE = "empty-task"
UNACKED_KEY = "unacked"
"""kombu's hash of delivered, not yet acknowledged messages: empty once a worker has acked its task."""
POLL_SECONDS = 0.02
GOAL_MS = 50.0

console = Console()


@contextlib.contextmanager
def private_redis_db() -> Iterator[str]:
    """An empty database number of the real Redis, held by a marker key for the run, flushed after."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{number}")
        if client.dbsize() == 0 and client.set("submit-latency-benchmark", os.getpid(), nx=True):
            break
    else:
        raise SystemExit("submit_latency: every Redis database 1-15 holds keys; free one and run again")
    try:
        yield f"{REDIS}/{number}"
    finally:
        client.flushdb()


@contextlib.contextmanager
def database(directory: Path, sqlite: bool) -> Iterator[str]:
    """A fresh SQLite file, or a PostgreSQL database created now and dropped after."""
    if sqlite:
        yield f"sqlite:///{directory / 'cnnq.db'}"
        return
    from sqlalchemy import create_engine, text

    name = f"cnnq_submit_latency_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from cnnq.db.session import dispose_engines

        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_inputs(directory: Path) -> tuple[Path, Path]:
    """An untrained LeNet model file for 28x28 grayscale images, and one such PNG."""
    import numpy as np
    import torch
    from PIL import Image

    from cnnq.jobs.checkpoint import ModelInfo, save_model_file
    from cnnq.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("lenet", in_channels=1, image_size=28, num_classes=2)
    model_file = save_model_file(
        directory / "lenet.pt", model, ModelInfo("lenet", 1, 28, ["a", "b"], (0.5,), (0.25,))
    )
    image = directory / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), "L").save(image)
    return model_file, image


@contextlib.contextmanager
def process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """A worker process in its own session; SIGTERM (a warm shutdown) when the block ends."""
    with open(log, "ab") as output:
        child = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95 and max, in milliseconds."""
    ms = sorted(1000 * value for value in values)
    p95 = quantiles(ms, n=20, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return median(ms), p95, ms[-1]


class Sampler:
    """Takes one sample of each kind, each on idle workers."""

    def __init__(self, spec: object, settle: float) -> None:
        from cnnq.lifecycle.broker import get_app, redis_client

        self.spec = spec
        self.settle = settle
        self.redis = redis_client(timeout=60)
        self.app = get_app()

    def idle(self) -> None:
        """Wait until no message is delivered and unacknowledged, then `settle` seconds more."""
        deadline = time.monotonic() + 60
        while self.redis.hlen(UNACKED_KEY):
            if time.monotonic() > deadline:
                raise SystemExit("submit_latency: a worker never acknowledged its message")
            time.sleep(POLL_SECONDS)
        time.sleep(self.settle)

    def celery(self, tag: str, timeout: float = 60) -> float:
        """(a): seconds from `send_task` to the empty task's start."""
        from cnnq.lifecycle.queues import message_priority

        self.idle()
        sent = time.time()
        self.app.send_task(  # with the options cnnq's sending mirrors (`cnnq.lifecycle.broker`)
            EMPTY_TASK,
            args=[tag],
            queue=EMPTY_QUEUE,
            priority=message_priority(0),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
        )
        popped = self.redis.blpop([STARTED_KEY], timeout=timeout)
        if popped is None:
            raise SystemExit(f"submit_latency: the empty task did not start within {timeout:.0f}s")
        got, started = popped[1].decode().split()
        assert got == tag, (got, tag)
        return float(started) - sent

    def cnnq(self, timeout: float = 60) -> tuple[float, float, str]:
        """(b): seconds from the call of `submit_job` to the row's `claimed_at`, and to its return."""
        from cnnq.db.jobs import get_job
        from cnnq.db.session import session_scope
        from cnnq.lifecycle.submit import Placement, submit_job

        self.idle()
        called = time.time()
        job_id = submit_job(self.spec, Placement())  # type: ignore[arg-type]
        returned = time.time()
        deadline = time.monotonic() + timeout
        while True:
            with session_scope() as session:
                job = get_job(session, job_id)
                status, claimed_at, error = job.status, job.claimed_at, job.error_message
            if status.finished:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"submit_latency: job {job_id} is still {status} after {timeout:.0f}s")
            time.sleep(POLL_SECONDS)
        if status != "SUCCEEDED" or claimed_at is None:
            raise SystemExit(f"submit_latency: job {job_id} ended {status}: {error}")
        return claimed_at.timestamp() - called, returned - called, job_id


def wait_for_worker(since: float, timeout: float = 180) -> None:
    """Until a worker that registered after `since` (`time.time()`) is ready."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from cnnq.db.orm import Worker
    from cnnq.db.session import session_scope

    after = datetime.fromtimestamp(since, UTC)
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            started = session.scalars(
                select(Worker.name).where(Worker.stopped_at.is_(None), Worker.started_at >= after)
            ).all()
        if started:
            return
        if time.monotonic() > deadline:
            raise SystemExit("submit_latency: the cnnq worker did not register; see its log")
        time.sleep(0.2)


def measure(sampler: Sampler, jobs: int, warmup: int) -> tuple[list[float], list[float], list[float]]:
    """Warm both workers, then alternate the two kinds of sample."""
    for index in range(warmup):
        sampler.cnnq(timeout=180)
        sampler.celery(f"warm{index}", timeout=180)
    celery, cnnq, submit = [], [], []
    for index in range(jobs):
        to_running, to_return, _ = sampler.cnnq()
        cnnq.append(to_running)
        submit.append(to_return)
        celery.append(sampler.celery(f"sample{index}"))
    return celery, cnnq, submit


def report(celery: list[float], cnnq: list[float], submit: list[float], database_name: str) -> None:
    table = Table(title=f"Submit to RUNNING on a warm worker ({len(cnnq)} samples each, {database_name})")
    for column in ("", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="left" if not column else "right")
    rows = [
        ("(a) Celery: send_task -> empty task starts", celery),
        ("(b) cnnq: submit_job called -> claimed_at", cnnq),
        ("    of which submit_job returns", submit),
    ]
    for name, values in rows:
        table.add_row(name, *(f"{v:.1f}" for v in percentiles(values)))
    console.print(table)
    (a50, a95, _), (b50, b95, _) = percentiles(celery), percentiles(cnnq)
    verdict = "met" if b50 - a50 < GOAL_MS else "NOT met"
    console.print(
        f"(b) - (a): p50 {b50 - a50:.1f} ms, p95 {b95 - a95:.1f} ms; (b) / (a) at p50: {b50 / a50:.1f}x. "
        f"Goal: p50 under {GOAL_MS:.0f} ms above Celery's: {verdict}."
    )


HOPS = [
    ("submit: broker PING", "submit.start", "submit.pinged"),
    ("submit: INSERT + COMMIT of the row", "submit.pinged", "submit.committed"),
    ("submit sends -> Celery's consumer has the message", "submit.committed", "worker.received"),
    ("Celery consumer -> run_job_task starts", "worker.received", "worker.task"),
    ("run_job_task -> sends the job id down the pipe", "worker.task", "worker.piping"),
    ("pipe -> the job process has it (execute_job)", "worker.piping", "process.received"),
    ("claim's SQL up to claimed_at", "sql.1.start", "claimed_at"),
    ("(claim's rest: refresh, settle, COMMIT)", "claimed_at", "process.claimed"),
]


def read_trace(path: Path) -> tuple[dict[str, dict[str, float]], dict[int, str]]:
    """Each job's events by name, the claim's SQL statements numbered in order (`sql.N.start`,
    `sql.N.end`), and what statement N is (SELECT, UPDATE, ...)."""
    events: dict[str, dict[str, float]] = defaultdict(dict)
    pending: list[tuple[str, float]] = []
    statements: dict[str, int] = defaultdict(int)
    verbs: dict[int, str] = {}
    for line in path.read_text().splitlines():
        job_id, event, text = line.split()
        at = float(text)
        if job_id == "pending":  # the submit's first steps, before its job has an id
            pending.append((event, at))
            continue
        if event == "submit.returned":
            for name, pending_at in pending:
                events[job_id].setdefault(name, pending_at)
            pending.clear()
        if event.startswith("sql."):
            _, verb, edge = event.split(".")
            statements[job_id] += edge == "start"
            verbs.setdefault(statements[job_id], verb.upper())
            event = f"sql.{statements[job_id]}.{edge}"
        events[job_id].setdefault(event, at)
    return events, verbs


def profile(sampler: Sampler, jobs: int, warmup: int, directory: Path, database_name: str) -> None:
    """Run `jobs` more jobs on a timestamped worker and print each hop's share."""
    from cnnq.settings import usable_cores

    trace = directory / "trace.txt"
    os.environ[TRACE_ENV] = str(trace)
    trace_submit()
    name = f"cpu1-{os.getpid()}@{socket.gethostname()}"
    env = {"CUDA_VISIBLE_DEVICES": "", "CNNQ_TORCH_THREADS": str(usable_cores())}
    since = time.time()
    command = [sys.executable, str(HERE / "latency_trace.py"), "--name", name, "--queues", "cpu,default"]
    claimed: dict[str, float] = {}
    totals = []
    with process(command, directory / "traced-worker.log", env):
        wait_for_worker(since)
        for _ in range(warmup):
            sampler.cnnq(timeout=180)
        trace.unlink(missing_ok=True)
        for _ in range(jobs):
            to_running, _, job_id = sampler.cnnq()
            claimed[job_id] = to_running
            totals.append(to_running)
    events, verbs = read_trace(trace)
    for job_id, seconds in claimed.items():
        events[job_id]["claimed_at"] = events[job_id]["submit.start"] + seconds
    hops = list(HOPS)
    for number, verb in sorted(verbs.items()):
        begin = "process.received" if number == 1 else f"sql.{number - 1}.end"
        hops.append((f"  claim: before SQL #{number} ({verb})", begin, f"sql.{number}.start"))
        hops.append((f"  claim: SQL #{number} ({verb})", f"sql.{number}.start", f"sql.{number}.end"))
    table = Table(
        title=f"Where cnnq's submit -> RUNNING goes ({jobs} jobs, timestamped worker, {database_name})"
    )
    for column in ("hop", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "hop" else "right")
    for label, start, end in hops:
        spans = [e[end] - e[start] for e in events.values() if start in e and end in e]
        if spans:
            p50, p95, _ = percentiles(spans)
            table.add_row(label, f"{p50:.1f}", f"{p95:.1f}")
    p50, p95, _ = percentiles(totals)
    table.add_row("total: submit_job called -> claimed_at", f"{p50:.1f}", f"{p95:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="samples of each kind")
    parser.add_argument("--warmup", type=int, default=1, help="jobs (and empty tasks) before the samples")
    parser.add_argument("--settle", type=float, default=0.2, help="idle seconds before each sample")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="then time each hop on a traced worker")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="cnnq-submit-latency-") as tmp,
        private_redis_db() as broker_url,
        database(Path(tmp), args.sqlite) as database_url,
    ):
        directory = Path(tmp)
        os.environ.pop("CNNQ_TORCH_THREADS", None)  # `cnnq worker` sets its own
        os.environ.update(
            {
                "CNNQ_HOME": str(directory / "home"),
                "CNNQ_BROKER_URL": broker_url,
                "CNNQ_DATABASE_URL": database_url,
                "CNNQ_ARTIFACT_ROOT": str(directory / "artifacts"),
            }
        )
        from cnnq.db.migrate import upgrade_database
        from cnnq.jobs.spec import InferSpec
        from cnnq.settings import reload_settings

        reload_settings()
        upgrade_database()
        model_file, image = make_inputs(directory)
        spec = InferSpec(
            model_from="benchmark",
            model_file=model_file,
            input=str(image),
            inputs=[str(image)],
            engine="eager",
            device="cpu",
            num_workers=0,
        )
        database_name = "SQLite" if args.sqlite else "PostgreSQL"
        sampler = Sampler(spec, args.settle)
        console.print(f"broker {broker_url}, {database_name}; logs in {directory} (removed at the end)")
        empty_worker = [sys.executable, str(HERE / "empty_task.py"), EMPTY_QUEUE]
        cnnq_worker = [sys.executable, "-m", "cnnq", "worker", "--cpu"]
        with (
            process(empty_worker, directory / "empty-worker.log"),
            process(cnnq_worker, directory / "cnnq-worker.log"),
        ):
            celery, cnnq, submit = measure(sampler, args.jobs, args.warmup)
        report(celery, cnnq, submit, database_name)
        if args.profile:
            profile(sampler, args.jobs, args.warmup, directory, database_name)


if __name__ == "__main__":
    main()

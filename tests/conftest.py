"""Shared fixtures: real Redis servers, real SQLite and PostgreSQL databases, cnnq's settings pointed at them.

Nothing here is a mock: each Redis is a `redis-server` process on a free port, each PostgreSQL
database is created on the local server and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cnnq.db.orm import Job

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = (REPO.parent / "shared" / "datasets").resolve()
POSTGRES_ADMIN_URL = os.environ.get(
    "CNNQ_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# One torch thread per test process: the workers the tests start share two cores with it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("CNNQ_TORCH_THREADS", "1")  # jobs set torch threads from this, not OMP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the whole test session (flushed by `broker_url`)."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cnnq.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    from sqlalchemy import create_engine, text

    name = f"cnnq_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    from cnnq.db.session import dispose_engines

    dispose_engines()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that uses it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def mnist_root() -> Path:
    if not (SHARED_DATASETS / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not found under {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture
def cnnq_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Iterator[dict[str, str]]:
    """cnnq's settings for this test: its own home, artifacts and an upgraded SQLite database.

    Tests that need PostgreSQL or Redis override `CNNQ_DATABASE_URL` / `CNNQ_BROKER_URL` through
    `use_settings`.
    """
    env = {
        "CNNQ_HOME": str(tmp_path / "home"),
        "CNNQ_DATABASE_URL": sqlite_url,
        "CNNQ_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "CNNQ_DATA_ROOT": str(SHARED_DATASETS),
        "CNNQ_BROKER_URL": "redis://127.0.0.1:1/0",  # nothing listens: a test that needs Redis says so
    }
    yield from _apply(env, monkeypatch)


def _apply(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from cnnq.db.migrate import upgrade_database
    from cnnq.db.session import dispose_engines
    from cnnq.settings import reload_settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    upgrade_database(env["CNNQ_DATABASE_URL"])
    yield env
    dispose_engines()
    for key in env:
        monkeypatch.delenv(key, raising=False)
    reload_settings()


@pytest.fixture
def use_settings(monkeypatch: pytest.MonkeyPatch, cnnq_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Call with overrides, e.g. `use_settings(CNNQ_DATABASE_URL=postgres_url)`; returns the env."""

    def apply(**overrides: str) -> dict[str, str]:
        from cnnq.db.migrate import upgrade_database
        from cnnq.db.session import dispose_engines
        from cnnq.settings import reload_settings

        dispose_engines()
        for key, value in overrides.items():
            monkeypatch.setenv(key, value)
            cnnq_env[key] = value
        reload_settings()
        upgrade_database(cnnq_env["CNNQ_DATABASE_URL"])
        return cnnq_env

    return apply


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli() -> object:
    """Run the `cnnq` CLI in this process: `cli("jobs", "--json")` -> CliResult."""
    from cnnq.cli.app import main

    def invoke(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
        return CliResult(code, out.getvalue(), err.getvalue())

    return invoke


def cnnq_command() -> list[str]:
    """The CLI as a separate process (for workers and end-to-end tests)."""
    return [sys.executable, "-m", "cnnq"]


# --- Worker processes (SPINE) -----------------------------------------------------------------------

FAST_BEATS = {
    "CNNQ_HEARTBEAT_SECONDS": "1",
    "CNNQ_LOST_AFTER_SECONDS": "5",
    "CNNQ_CANCEL_POLL_SECONDS": "0.5",
    "CNNQ_TORCH_THREADS": "1",
}


@dataclass
class WorkerLauncher:
    """A `cnnq worker ...` process (a supervisor of one or more Celery worker processes)."""

    process: subprocess.Popen[bytes]
    log: Path

    def celery_pids(self) -> list[int]:
        """The registered Celery worker processes this launcher started (from the `workers` table)."""
        from sqlalchemy import select

        from cnnq.db.orm import Worker
        from cnnq.db.session import session_scope

        with session_scope() as session:
            rows = session.execute(select(Worker.name, Worker.pid).where(Worker.stopped_at.is_(None))).all()
        return [pid for name, pid in rows if f"-{self.process.pid}@" in name]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@pytest.fixture
def start_workers(tmp_path: Path) -> Iterator[object]:
    """`start_workers("--cpu", "--concurrency", "2", expect=2)`: real `cnnq worker` processes with this
    test's CNNQ_* environment, returned once `expect` of them registered; all stopped at the end."""
    launched: list[WorkerLauncher] = []

    def start(*args: str, expect: int = 1, timeout: float = 90.0) -> WorkerLauncher:
        log = tmp_path / f"worker-{len(launched)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*cnnq_command(), "worker", *(args or ("--cpu",))],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ},
            )
        launcher = WorkerLauncher(process, log)
        launched.append(launcher)
        deadline = time.monotonic() + timeout
        while len(launcher.celery_pids()) < expect:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not register: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        return launcher

    yield start
    for launcher in launched:
        launcher.stop()


@pytest.fixture
def queue_env(use_settings, broker_url: str, database_url: str):  # type: ignore[no-untyped-def]
    """cnnq settings for tests with a real Redis, fast heartbeats, and SQLite or PostgreSQL."""
    return use_settings(CNNQ_BROKER_URL=broker_url, CNNQ_DATABASE_URL=database_url, **FAST_BEATS)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def job_of(job_id: str) -> Job:
    from cnnq.db.jobs import get_job
    from cnnq.db.session import session_scope

    with session_scope() as s:
        return get_job(s, job_id)


def finished(job_id: str) -> bool:
    return job_of(job_id).status.finished

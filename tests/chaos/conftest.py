"""Fixtures of the chaos suite: a private PostgreSQL cluster, a durable private Redis, real workers.

- `private_postgres` (session): one cluster for the suite; each test gets a fresh database on it
  through `chaos_database`, which also starts the cluster again if a test left it stopped.
- `durable_redis`: a redis-server of the test's own with an append-only file (fsync always).
- `chaos_env`: cnnq's settings pointed at both, with fast beats (heartbeat 1 s, lost after 5 s,
  re-sent after 5 s, stalled after 8 s); worker processes inherit them.
- `workers`: starts real `cnnq worker --cpu` processes and kills whatever is left at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.processes import WorkerProcess, launch_worker
from tests.chaos.rows import dispose_all, live_worker_rows, wait_for
from tests.chaos.services import DurableRedis, PrivatePostgres, postgres_bin

CHAOS_SETTINGS = {
    "CNNQ_HEARTBEAT_SECONDS": "1",
    "CNNQ_LOST_AFTER_SECONDS": "5",
    "CNNQ_REQUEUE_AFTER_SECONDS": "5",
    "CNNQ_STALL_SECONDS": "8",
    "CNNQ_DB_OUTAGE_SECONDS": "300",
    "CNNQ_MAX_ATTEMPTS": "10",
    "CNNQ_CANCEL_POLL_SECONDS": "0.5",
    "CNNQ_TORCH_THREADS": "1",
}


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the suite's own on a free port of 127.0.0.1; always torn down."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin")
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        dispose_all()
        cluster.destroy()


@pytest.fixture
def chaos_database(private_postgres: PrivatePostgres) -> Iterator[str]:
    """A fresh database on the private cluster (started again first if a test left it stopped)."""
    if not private_postgres.running():
        private_postgres.start()
    url = private_postgres.create_database()
    yield url
    dispose_all()
    from cnnq.db.session import dispose_engines

    dispose_engines()
    if not private_postgres.running():
        private_postgres.start()
    private_postgres.drop_database(url)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[DurableRedis]:
    server = DurableRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chaos_env(use_settings, chaos_database: str, durable_redis: DurableRedis) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The test's CNNQ_* settings (also in os.environ, so `cnnq` processes it starts get them)."""
    return use_settings(CNNQ_BROKER_URL=durable_redis.url, CNNQ_DATABASE_URL=chaos_database, **CHAOS_SETTINGS)


class Workers:
    """Starts `cnnq worker` processes with the test's environment; `cleanup` kills all that are left."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "worker-logs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.started: list[WorkerProcess] = []

    def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        wait: bool = True,
        expect: int = 1,
        timeout: float = 90.0,
    ) -> WorkerProcess:
        log = self.folder / f"worker-{len(self.started)}.log"
        worker = launch_worker(
            log, {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, args or ("--cpu",), prefix=prefix
        )
        self.started.append(worker)
        if wait:
            self.wait_registered(worker, expect=expect, timeout=timeout)
        return worker

    def wait_registered(self, worker: WorkerProcess, *, expect: int = 1, timeout: float = 90.0) -> None:
        url = os.environ["CNNQ_DATABASE_URL"]

        def registered() -> bool:
            if not worker.running():
                raise AssertionError(f"worker {worker.pid} exited: {worker.output()}")
            return sum(f"-{worker.pid}@" in name for name, _ in live_worker_rows(url)) >= expect

        wait_for(registered, timeout, f"worker {worker.pid} to register")

    def cleanup(self) -> None:
        for worker in self.started:
            worker.cleanup()


@pytest.fixture
def workers(tmp_path: Path, chaos_env: dict[str, str]) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    try:
        yield pool
    finally:
        pool.cleanup()

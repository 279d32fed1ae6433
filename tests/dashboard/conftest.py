"""A job database filled once per session by real jobs, and a fresh copy of it for each test.

The jobs: a LeNet trained on real MNIST (2 epochs), one trained on a small chest X-ray set with a
Youden threshold, an evaluation of it (confusion matrix, ROC), a bulk inference of the whole X-ray
folder, broken files included, in three shards (submitted through Redis, each shard executed as a
worker executes it) and a job that failed. Each test gets its own copy of the SQLite file, so tests
that cancel or retry do not disturb the others; the artifacts are shared, read-only.
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SHARED_DATASETS
from tests.sample_data import make_chest_xray

APP = REPO / "cnnq" / "dashboard" / "app.py"


@dataclass(frozen=True)
class FilledDatabase:
    database: Path
    artifacts: Path
    home: Path
    chest_xray: Path
    mnist_train: str
    xray_train: str
    xray_eval: str
    bulk: str
    failed: str

    @property
    def job_ids(self) -> list[str]:
        return [self.mnist_train, self.xray_train, self.xray_eval, self.bulk, self.failed]


def _cnnq_json(*args: str) -> dict:
    """Run the CLI in this process and return the job object it prints with --json."""
    from cnnq.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--json"])
    if code != 0:
        raise AssertionError(f"cnnq {' '.join(args)} exited {code}: {err.getvalue()}{out.getvalue()}")
    return json.loads(out.getvalue())


def _fill(root: Path, broker_url: str) -> FilledDatabase:
    from cnnq.db.jobs import children_of, create_job
    from cnnq.db.session import session_scope
    from cnnq.lifecycle.claim import execute_job

    xray_root = root / "xray"
    chest = make_chest_xray(xray_root)
    mnist = _cnnq_json(
        "run", "train", "--model", "lenet", "--dataset", "mnist", "--limit", "256", "--epochs", "2",
        "--batch-size", "64", "--num-workers", "0",
    )  # fmt: skip
    xray = _cnnq_json(
        "run", "train", "--model", "lenet", "--dataset", "xray", "--data-root", str(xray_root),
        "--image-size", "32", "--epochs", "2", "--threshold", "youden", "--num-workers", "0",
    )  # fmt: skip
    evaluation = _cnnq_json("run", "eval", "--model-from", xray["id"], "--num-workers", "0")
    # A bulk job: three shards queued in Redis, each run here as a worker runs the message it takes.
    bulk = _cnnq_json(
        "submit", "infer", "--model-from", xray["id"], "--input", str(chest),
        "--shard-size", "50", "--num-workers", "0",
    )  # fmt: skip
    with session_scope() as session:
        shards = [child.id for child in children_of(session, bulk["id"])]
    for shard in shards:
        execute_job(shard, worker="test-worker@dashboard")
    # A job that fails as it runs: its model file disappeared after it was submitted.
    with session_scope() as session:
        failed = create_job(
            session,
            kind="eval",
            spec={"kind": "eval", "model_from": xray["id"], "model_file": str(root / "gone" / "best.pt")},
            queue="local",
        ).id
    execute_job(failed, worker="test-worker@dashboard")
    from cnnq.settings import get_settings

    settings = get_settings()
    return FilledDatabase(
        database=Path(settings.database_url.removeprefix("sqlite:///")),
        artifacts=settings.artifact_dir,
        home=settings.home,
        chest_xray=chest,
        mnist_train=mnist["id"],
        xray_train=xray["id"],
        xray_eval=evaluation["id"],
        bulk=bulk["id"],
        failed=failed,
    )


@contextlib.contextmanager
def new_database(root: Path, redis_server: Any) -> Iterator[None]:
    """For the block: CNNQ_* settings for a new, migrated SQLite database under `root`, the real MNIST
    and the test session's Redis (flushed before and after); the settings as they were after it."""
    if not (SHARED_DATASETS / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not found under {SHARED_DATASETS}")
    from cnnq.db.migrate import upgrade_database
    from cnnq.db.session import dispose_engines
    from cnnq.settings import reload_settings

    redis_server.flush()
    env = {
        "CNNQ_HOME": str(root / "home"),
        "CNNQ_DATABASE_URL": f"sqlite:///{root / 'cnnq.db'}",
        "CNNQ_ARTIFACT_ROOT": str(root / "artifacts"),
        "CNNQ_DATA_ROOT": str(SHARED_DATASETS),
        "CNNQ_BROKER_URL": redis_server.url,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        reload_settings()
        upgrade_database(env["CNNQ_DATABASE_URL"])
        try:
            yield
        finally:
            dispose_engines()
    reload_settings()
    redis_server.flush()


@pytest.fixture(scope="session")
def filled_database(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> FilledDatabase:
    root = tmp_path_factory.mktemp("dashboard-jobs")
    with new_database(root, redis_server):
        return _fill(root, redis_server.url)


def copy_database(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite database (WAL included), through SQLite's backup API."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    return target


def copy_env(filled_database: FilledDatabase, tmp_path: Path) -> dict[str, str]:
    """CNNQ_* settings for this test's own copy of the filled database (no broker answers)."""
    database = copy_database(filled_database.database, tmp_path / "cnnq.db")
    return {
        "CNNQ_HOME": str(tmp_path / "home"),
        "CNNQ_DATABASE_URL": f"sqlite:///{database}",
        "CNNQ_ARTIFACT_ROOT": str(filled_database.artifacts),
        "CNNQ_DATA_ROOT": str(SHARED_DATASETS),
        "CNNQ_BROKER_URL": "redis://127.0.0.1:1/0",
    }


@pytest.fixture
def dashboard_env(
    filled_database: FilledDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """CNNQ_* settings pointing at this test's own copy of the filled database."""
    from cnnq.db.session import dispose_engines
    from cnnq.settings import reload_settings

    env = copy_env(filled_database, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    yield env
    dispose_engines()
    for key in env:
        monkeypatch.delenv(key, raising=False)
    reload_settings()


@pytest.fixture
def dashboard_broker(dashboard_env: dict[str, str], broker_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's copy of the database plus a real, empty Redis as the broker."""
    from cnnq.settings import reload_settings

    monkeypatch.setenv("CNNQ_BROKER_URL", broker_url)
    dashboard_env["CNNQ_BROKER_URL"] = broker_url
    reload_settings()
    return broker_url

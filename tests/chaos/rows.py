"""What the chaos tests read back: job rows, metric, log, artifact and prediction rows, files.

Plain SQL through SQLAlchemy against the test's database URL (the tables are cnnq's contract: `jobs`,
`metrics`, `logs`, `artifacts`, `predictions`, `workers`), so the checks do not depend on how cnnq's
own modules are arranged. An engine per URL, pinged before use: the database may have been restarted.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, text

FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED")
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
"""Metrics every training epoch reports (README: "Metric names that scripts can rely on")."""

_engines: dict[str, Engine] = {}


def engine(url: str) -> Engine:
    if url not in _engines:
        _engines[url] = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
    return _engines[url]


def dispose_all() -> None:
    for made in _engines.values():
        made.dispose()
    _engines.clear()


def query(url: str, sql: str, **params: Any) -> list[Any]:
    statement = text(sql)
    for name, value in params.items():
        if isinstance(value, list | tuple | set):
            statement = statement.bindparams(bindparam(name, expanding=True))
            params[name] = list(value)
    with engine(url).connect() as connection:
        return list(connection.execute(statement, params))


@dataclass(frozen=True)
class JobRow:
    id: str
    kind: str
    status: str
    attempts: int
    worker: str | None
    parent_id: str | None
    error_type: str | None
    error_message: str | None
    message: str | None

    def describe(self) -> str:
        error = f" {self.error_type}: {(self.error_message or '')[:200]}" if self.error_type else ""
        return f"{self.id} {self.status} (attempts {self.attempts}, worker {self.worker}){error}"


_JOB_COLUMNS = "id, kind, status, attempts, worker, parent_id, error_type, error_message, message"


def jobs(url: str, ids: Iterable[str] | None = None) -> list[JobRow]:
    """Rows of these jobs (all jobs when `ids` is None), with the shards of any bulk job among them."""
    if ids is None:
        rows = query(url, f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id")
    else:
        wanted = list(ids)
        rows = query(
            url,
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN :ids OR parent_id IN :ids ORDER BY id",
            ids=wanted,
        )
    return [JobRow(*row) for row in rows]


def job(url: str, job_id: str) -> JobRow:
    found = [row for row in jobs(url, [job_id]) if row.id == job_id]
    assert found, f"job {job_id} has no row"
    return found[0]


def status_counts(url: str, ids: Iterable[str] | None = None) -> Counter[str]:
    return Counter(row.status for row in jobs(url, ids))


def outcome_report(url: str, ids: Iterable[str]) -> str:
    """One paragraph counting lost (no row), stuck (QUEUED / RUNNING) and failed jobs, with each one."""
    wanted = list(ids)
    rows = jobs(url, wanted)
    present = {row.id for row in rows}
    lost = [job_id for job_id in wanted if job_id not in present]
    stuck = [row for row in rows if row.status in ("QUEUED", "RUNNING")]
    failed = [row for row in rows if row.status in ("FAILED", "CANCELLED")]
    lines = [
        f"{len(rows)} job rows: {dict(Counter(row.status for row in rows))}; "
        f"lost (no row) {len(lost)}, stuck {len(stuck)}, failed or cancelled {len(failed)}"
    ]
    lines += [f"  lost: {job_id}" for job_id in lost]
    lines += [f"  stuck: {row.describe()}" for row in stuck]
    lines += [f"  failed: {row.describe()}" for row in failed]
    return "\n".join(lines)


def all_finished(url: str, ids: Iterable[str]) -> bool:
    wanted = list(ids)
    rows = jobs(url, wanted)
    return {row.id for row in rows} >= set(wanted) and all(row.status in FINISHED for row in rows)


def metric_counts(url: str, job_id: str) -> Counter[tuple[str, int]]:
    rows = query(
        url, "SELECT name, step, COUNT(*) FROM metrics WHERE job_id = :j GROUP BY name, step", j=job_id
    )
    return Counter({(name, int(step)): int(count) for name, step, count in rows})


def epoch_metric_problems(url: str, job_id: str, epochs: int) -> list[str]:
    """What breaks "exactly one metric row per epoch for each name" for a training job."""
    counts = metric_counts(url, job_id)
    problems = [f"{name}@{step} has {n} rows" for (name, step), n in sorted(counts.items()) if n != 1]
    for name in EPOCH_METRICS:
        steps = sorted(step for (metric, step) in counts if metric == name)
        if steps != list(range(1, epochs + 1)):
            problems.append(f"{name} at epochs {steps}, wanted 1..{epochs}")
    return problems


def metric_rows(url: str, job_id: str) -> list[tuple[Any, ...]]:
    """Every metric row with its value and time (a rewrite of a row changes its time)."""
    return [
        tuple(row)
        for row in query(
            url,
            "SELECT name, step, value, time FROM metrics WHERE job_id = :j ORDER BY name, step, id",
            j=job_id,
        )
    ]


def log_lines(url: str, job_id: str) -> list[str]:
    return [row[0] for row in query(url, "SELECT line FROM logs WHERE job_id = :j ORDER BY id", j=job_id)]


def artifact_rows(url: str, job_id: str) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in query(
            url,
            "SELECT kind, uri, bytes, sha256, created_at FROM artifacts WHERE job_id = :j ORDER BY kind",
            j=job_id,
        )
    ]


def prediction_counts(url: str, bulk_id: str) -> Counter[str]:
    rows = query(url, "SELECT input, COUNT(*) FROM predictions WHERE bulk_id = :b GROUP BY input", b=bulk_id)
    return Counter({name: int(count) for name, count in rows})


def prediction_problems(url: str, bulk_id: str, inputs: Iterable[str]) -> list[str]:
    """What breaks "exactly one prediction row per input" for a bulk job."""
    counts = prediction_counts(url, bulk_id)
    wanted = set(inputs)
    missing = sorted(wanted - set(counts))
    extra = sorted(set(counts) - wanted)
    doubled = sorted(name for name, n in counts.items() if n > 1)
    problems = []
    if missing:
        problems.append(f"{len(missing)} inputs without a row, e.g. {missing[:3]}")
    if doubled:
        problems.append(f"{len(doubled)} inputs with more than one row, e.g. {doubled[:3]}")
    if extra:
        problems.append(f"{len(extra)} rows for inputs not in the job, e.g. {extra[:3]}")
    return problems


def live_worker_rows(url: str) -> list[tuple[str, int]]:
    return [
        (name, int(pid)) for name, pid in query(url, "SELECT name, pid FROM workers WHERE stopped_at IS NULL")
    ]


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    if not folder.is_dir():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def wait_for(check: Callable[[], bool], timeout: float, what: str, *, every: float = 0.25) -> float:
    """Wait until `check()` holds; returns the seconds it took. Errors while checking (a database
    restarting) count as "not yet"."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            if time.monotonic() - started > timeout:
                raise
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)

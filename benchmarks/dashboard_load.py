"""Dashboard first-render times at scale: every page in a real headless Chromium, on a generated database
of 1,000 jobs and 100,000 predictions against the same page on a 10-job database, in one run.

The databases are SQLite files filled with the rows real jobs write (specs as cnnq validates them,
per-epoch metrics, evaluation reports, logs, artifacts, a bulk job's shards and predictions), made by
`fill_database`; `tests/dashboard/test_load.py` uses the same functions. Each server is warmed by one
pass over the pages (imports, first connections, the browser's cache of the dashboard's scripts), then
every page is opened `--repeats` times, each in a new tab (a new session: a first render, not a
redraw), timed from navigation to the script's end with the page's title drawn. The figure is the
median.

Goal: every page under 3 s, and within 1.5x of its time on the 10-job database.

    .venv/bin/python benchmarks/dashboard_load.py                       # 1,000 jobs, 100,000 predictions
    .venv/bin/python benchmarks/dashboard_load.py --jobs 200 --predictions 5000 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
EPOCHS = 10
SHARDS = 10
TRACEBACK = """Traceback (most recent call last):
  File "/app/cnnq/jobs/train.py", line 52, in train_job
    bundle = load_dataset(data_request(spec), device)
  File "/app/cnnq/data/mnist.py", line 40, in read_images
    assert magic == 2051
AssertionError"""


@dataclass(frozen=True)
class Generated:
    """The ids of the jobs each page is opened on."""

    train: str
    evaluation: str
    bulk: str
    failed: str
    jobs: int
    predictions: int


def fill_database(url: str, jobs: int, predictions: int, seed: int = 0) -> Generated:
    """A migrated database at `url` filled with `jobs` finished jobs, `predictions` of them on one bulk job.

    About a tenth are evaluations, a twentieth failed, a fiftieth cancelled; there is one bulk job of
    `SHARDS` shards (plus one more per 100 jobs); the rest are training runs of `EPOCHS` epochs.
    """
    from sqlalchemy import insert

    from cnnq.db.migrate import upgrade_database
    from cnnq.db.orm import Artifact, Job, LogLine, Metric, Prediction, Worker
    from cnnq.db.session import session_scope
    from cnnq.db.status import JobStatus
    from cnnq.jobs.hyperparameters import effective_hyperparameters
    from cnnq.jobs.spec import TrainSpec

    upgrade_database(url)
    rng = random.Random(seed)
    shards_each = SHARDS if jobs >= 100 else 4
    now = datetime.now(UTC)
    bulk_parents = 1 + jobs // 100
    evals = max(1, jobs // 10)
    failed = max(1, jobs // 20)
    cancelled = jobs // 50
    trains = max(1, jobs - bulk_parents * (shards_each + 1) - evals - failed - cancelled)
    job_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    log_rows: list[dict[str, Any]] = []
    artifact_rows: list[dict[str, Any]] = []

    def job(kind: str, spec: dict[str, Any], status: JobStatus, **fields: Any) -> str:
        job_id = f"{kind}-{len(job_rows):05d}{rng.randrange(16**4):04x}"
        created = now - timedelta(minutes=10 * (jobs - len(job_rows)))
        started = created + timedelta(seconds=5)
        job_rows.append(
            {
                "id": job_id,
                "kind": kind,
                "spec": spec,
                "status": status,
                "queue": "cpu",
                "attempts": 1,
                "claims": 1,
                "progress": 1.0 if status == JobStatus.SUCCEEDED else rng.random(),
                "message": "succeeded" if status == JobStatus.SUCCEEDED else f"{status.lower()}",
                "worker": "cpu@bench",
                "device": "cpu",
                "created_at": created,
                "started_at": started,
                "finished_at": started + timedelta(seconds=rng.uniform(20, 900)),
                "parent_id": None,
                "result": None,
                **fields,
            }
        )
        return job_id

    train_ids = []
    for _ in range(trains):
        optimizer = rng.choice(["sgd", "adam", "adamw"])
        spec = TrainSpec.model_validate(
            {
                "model": rng.choice(["lenet", "simple-cnn", "resnet18"]),
                "dataset": rng.choice(["mnist", "xray", "cifar10"]),
                "data_root": "/data",
                "epochs": EPOCHS,
                "optimizer": optimizer,
                "lr": rng.choice([None, 0.01, 0.001]),
                "batch_size": rng.choice([32, 64, 128]),
            }
        )
        hyperparameters = effective_hyperparameters(spec)
        train_id = job(
            "train",
            spec.model_dump(mode="json"),
            JobStatus.SUCCEEDED,
            result={"hyperparameters": hyperparameters, "epochs": EPOCHS, "best_epoch": EPOCHS},
        )
        train_ids.append(train_id)
        accuracy = rng.uniform(0.6, 0.95)
        for epoch in range(1, EPOCHS + 1):
            reached = accuracy * (1 - 0.5**epoch)
            values = {
                "train_loss": 2.0 / epoch,
                "train_accuracy": reached,
                "val_loss": 2.2 / epoch,
                "val_accuracy": reached * 0.98,
                "lr": hyperparameters["lr"] * math.sin(math.pi * epoch / (EPOCHS + 1)),
                "images_per_second": rng.uniform(900, 1100),
                "epoch_seconds": rng.uniform(20, 40),
            }
            metric_rows += [
                {"job_id": train_id, "step": epoch, "name": name, "value": value, "time": now}
                for name, value in values.items()
            ]
        metric_rows += [
            {"job_id": train_id, "step": EPOCHS, "name": "test_accuracy", "value": accuracy, "time": now},
            {"job_id": train_id, "step": EPOCHS, "name": "test_loss", "value": 0.3, "time": now},
        ]
        log_rows += [
            {"job_id": train_id, "time": now, "line": f"epoch {epoch}: val_accuracy {0.5 + epoch / 40:.4f}"}
            for epoch in range(1, 21)
        ]
        for kind in ("model", "checkpoint"):
            artifact_rows.append(
                {
                    "job_id": train_id,
                    "kind": kind,
                    "uri": f"/artifacts/{train_id}/{'best' if kind == 'model' else 'last'}.pt",
                    "bytes": 250_000,
                    "sha256": "0" * 64,
                    "created_at": now,
                }
            )
    roc_points = 200
    fpr = [i / roc_points for i in range(roc_points + 1)]
    roc = {
        "fpr": fpr,
        "tpr": [min(1.0, math.sqrt(x) * 1.05) for x in fpr],
        "thresholds": [None, *fpr[:-1][::-1]],
    }
    eval_ids = []
    for _ in range(evals):
        source = rng.choice(train_ids)
        result = {
            "classes": ["NORMAL", "PNEUMONIA"],
            "confusion_matrix": [[80, 20], [10, 90]],
            "roc": roc,
            "threshold": 0.5,
            "positive_class": "PNEUMONIA",
            "per_class": [
                {"class": "NORMAL", "precision": 0.89, "recall": 0.8, "f1": 0.84, "support": 100},
                {"class": "PNEUMONIA", "precision": 0.82, "recall": 0.9, "f1": 0.86, "support": 100},
            ],
        }
        eval_id = job(
            "eval",
            {
                "kind": "eval",
                "model_from": source,
                "model_file": f"/artifacts/{source}/best.pt",
                "split": "test",
            },
            JobStatus.SUCCEEDED,
            result=result,
        )
        eval_ids.append(eval_id)
        values = {"accuracy": 0.85, "precision": 0.82, "recall": 0.9, "f1": 0.86, "roc_auc": 0.91}
        metric_rows += [
            {"job_id": eval_id, "step": 0, "name": name, "value": value, "time": now}
            for name, value in values.items()
        ]
    failed_ids = [
        job(
            "train",
            {"kind": "train", "model": "lenet", "dataset": "mnist", "data_root": "/data", "epochs": EPOCHS},
            JobStatus.FAILED,
            error_type="AssertionError",
            error_message="AssertionError",
            error_traceback=TRACEBACK,
        )
        for _ in range(failed)
    ]
    for _ in range(cancelled):
        job(
            "eval",
            {"kind": "eval", "model_from": train_ids[0], "model_file": "/gone.pt"},
            JobStatus.CANCELLED,
        )
    bulk_ids = []
    for parent_index in range(bulk_parents):
        source = train_ids[parent_index % len(train_ids)]
        spec = {
            "kind": "infer",
            "model_from": source,
            "model_file": f"/artifacts/{source}/best.pt",
            "input": "/data/scans",
        }
        bulk_id = job("infer", spec, JobStatus.SUCCEEDED)
        bulk_ids.append(bulk_id)
        for _ in range(shards_each):
            job(
                "infer",
                {**spec, "inputs": []},
                JobStatus.SUCCEEDED,
                parent_id=bulk_id,
                result={"positive_class": "PNEUMONIA", "threshold": 0.5, "classes": ["NORMAL", "PNEUMONIA"]},
            )
    shard_ids = [row["id"] for row in job_rows if row["parent_id"] == bulk_ids[0]]
    with session_scope(url) as session:
        session.execute(insert(Job), job_rows)
        for table, rows in ((Metric, metric_rows), (LogLine, log_rows), (Artifact, artifact_rows)):
            for start in range(0, len(rows), 20_000):
                session.execute(insert(table), rows[start : start + 20_000])
        session.execute(
            insert(Worker),
            [
                {"name": f"cpu{i}@bench", "hostname": "bench", "pid": 1000 + i, "queues": ["cpu"],
                 "memory_mb": 64000, "started_at": now, "heartbeat_at": now}
                for i in range(4)
            ],
        )  # fmt: skip
    batch: list[dict[str, Any]] = []
    for index in range(predictions):
        flagged = index % 500 == 7
        score = None if flagged else rng.random()
        batch.append(
            {
                "job_id": shard_ids[index % len(shard_ids)],
                "bulk_id": bulk_ids[0],
                "input": f"/data/scans/{index // 1000:03d}/scan_{index:06d}.png",
                "label": None if flagged else ("PNEUMONIA" if score >= 0.5 else "NORMAL"),
                "score": score,
                "probabilities": None if flagged else {"NORMAL": 1 - score, "PNEUMONIA": score},
                "error": "cannot identify image file" if flagged else None,
                "time": now,
            }
        )
        if len(batch) == 20_000 or index == predictions - 1:
            with session_scope(url) as session:
                session.execute(insert(Prediction), batch)
            batch = []
    return Generated(
        train=train_ids[-1],
        evaluation=eval_ids[-1],
        bulk=bulk_ids[0],
        failed=failed_ids[-1],
        jobs=len(job_rows),
        predictions=predictions,
    )


def pages(generated: Generated) -> dict[str, str]:
    """Page name -> path and query of its URL."""
    return {
        "Jobs": "jobs",
        "Job (training)": f"job?job={generated.train}",
        "Job (evaluation)": f"job?job={generated.evaluation}",
        "Job (failed)": f"job?job={generated.failed}",
        "Job (bulk parent)": f"job?job={generated.bulk}",
        "Compare": "compare",
        "Sweeps": "sweeps",
        "Bulk scoring": f"bulk?job={generated.bulk}",
        "X-ray check": "xray",
        "Workers": "workers",
    }


@contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[str]:
    """`cnnq dashboard` on a free port with `env` until the block ends: its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "cnnq", "dashboard", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cnnq dashboard did not start:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


RENDERED = """() => {
    if (document.querySelector('[data-testid=stException]')) return true;
    const app = document.querySelector('[data-testid=stApp]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-testid=stSkeleton]')) return false;
    const main = document.querySelector('[data-testid=stMain]');
    if (!main || main.querySelector('h1') === null) return false;
    const charts = [...main.querySelectorAll('[data-testid=stVegaLiteChart]')];
    return charts.every(chart => chart.querySelector('svg .role-mark, canvas') !== null);
}"""
"""The page's script has ended, its title is drawn and every chart has drawn its marks (Vega draws them
after the script's end, within tens of milliseconds), or it failed."""


def first_render_seconds(context: Any, url: str) -> float:
    """Seconds from navigation to the drawn page, in a new tab (a new session: a first render, not a
    redraw; the browser's cache of the dashboard's scripts is kept, as a returning user's is)."""
    page = context.new_page()
    try:
        page.set_default_timeout(120_000)
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_function(RENDERED, polling=20)
        elapsed = time.perf_counter() - started
        if page.locator("[data-testid=stException]").count():
            raise RuntimeError(f"{url}: {page.locator('[data-testid=stException]').first.inner_text()}")
        return elapsed
    finally:
        page.close()


def time_pages(base_url: str, paths: dict[str, str], repeats: int) -> dict[str, float]:
    """Each page's median first render in seconds, after one warm-up pass over them all."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            for path in paths.values():
                first_render_seconds(context, f"{base_url}/{path}")
            return {
                name: statistics.median(
                    first_render_seconds(context, f"{base_url}/{path}") for _ in range(repeats)
                )
                for name, path in paths.items()
            }
        finally:
            browser.close()


def server_env(root: Path, database: Path) -> dict[str, str]:
    """The dashboard's environment on `database`: no broker answers, no password."""
    inherited = {k: v for k, v in os.environ.items() if k != "CNNQ_DASHBOARD_PASSWORD"}
    return {
        **inherited,
        "CNNQ_HOME": str(root / "home"),
        "CNNQ_DATABASE_URL": f"sqlite:///{database}",
        "CNNQ_ARTIFACT_ROOT": str(root / "artifacts"),
        "CNNQ_BROKER_URL": "redis://127.0.0.1:1/0",
    }


def measure(root: Path, jobs: int, predictions: int, repeats: int) -> tuple[Generated, dict[str, float]]:
    database = root / f"cnnq-{jobs}.db"
    generated = fill_database(f"sqlite:///{database}", jobs, predictions)
    with served(server_env(root, database), root / f"dashboard-{jobs}.log") as url:
        return generated, time_pages(url, pages(generated), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--small-jobs", type=int, default=10)
    parser.add_argument("--small-predictions", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cnnq-dashboard-load-"))
    try:
        small, small_times = measure(root, args.small_jobs, args.small_predictions, args.repeats)
        large, large_times = measure(root, args.jobs, args.predictions, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nfirst render, median of {args.repeats} (s): {small.jobs} jobs / {small.predictions:,} "
        f"predictions vs {large.jobs} jobs / {large.predictions:,} predictions\n"
    )
    print(f"| page | {small.jobs} jobs | {large.jobs} jobs | ratio |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for name in small_times:
        ratio = large_times[name] / small_times[name]
        worst = max(worst, ratio)
        print(f"| {name} | {small_times[name]:.2f} | {large_times[name]:.2f} | {ratio:.2f}x |")
    slowest = max(large_times.values())
    print(f"\nslowest page {slowest:.2f} s (goal < 3 s), worst ratio {worst:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()

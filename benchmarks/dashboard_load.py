"""Dashboard first-render times at scale: every page in a real headless Chromium, on a generated database
of 1,000 jobs and 100,000 predictions against the same page on a 10-job database (both with one sweep),
in one run.

The databases are SQLite files filled with the rows real jobs write (specs as cnnq validates them,
per-epoch metrics, evaluation reports, logs, artifacts, a bulk job's shards and predictions), made by
`fill_database`; `tests/dashboard/test_load.py` uses the same functions. Each also holds the same
finished sweep of 30 trials, its Optuna study made, asked, reported to and told by cnnq's own study
functions (`_sweep`); its page is opened on it, with its trials table and all its charts. The small
database gets it on top of its 10 jobs (41 in all); the large one's trials are among its 1,000 jobs.
Each server is warmed by one pass over the pages (imports, first connections, the browser's cache of
the dashboard's scripts), then every page is opened `--repeats` times, each in a new tab (a new session:
a first render, not a redraw), timed from navigation to the script's end with the page's title and
every chart's marks drawn. The figure is the median.

Goal: every page under 3 s, and within 1.5x of its time on the 10-job database (41 jobs with the sweep).

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
SWEEP_TRIALS = 30
SWEEP_PARAMS = ("lr=loguniform:1e-4:1e-1", "batch_size=choice:32,64,128", "optimizer=choice:sgd,adam,adamw")
SWEEP_PARALLEL = 3
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
    sweep: str
    sweep_trials: int
    jobs: int
    predictions: int


def fill_database(
    url: str, jobs: int, predictions: int, seed: int = 0, sweep_trials: int = SWEEP_TRIALS
) -> Generated:
    """A migrated database at `url` filled with `jobs` finished jobs, `predictions` of them on one bulk job.

    About a tenth are evaluations, a twentieth failed, a fiftieth cancelled; there is one bulk job of
    `SHARDS` shards (plus one more per 100 jobs) and one finished sweep of `sweep_trials` trials (`_sweep`);
    the rest are training runs of `EPOCHS` epochs. The sweep's jobs come out of the training runs where
    there are plenty of them; a small database gets the sweep on top of its `jobs`.
    """
    from sqlalchemy import insert

    from cnnq.db.migrate import upgrade_database
    from cnnq.db.orm import Artifact, Job, LogLine, Metric, Prediction, Sweep, SweepTrial, Worker
    from cnnq.db.session import session_scope
    from cnnq.db.status import JobStatus
    from cnnq.jobs.hyperparameters import effective_hyperparameters
    from cnnq.jobs.spec import TrainSpec
    from cnnq.sweeps.trials import settle

    upgrade_database(url)
    rng = random.Random(seed)
    shards_each = SHARDS if jobs >= 100 else 4
    now = datetime.now(UTC)
    bulk_parents = 1 + jobs // 100
    evals = max(1, jobs // 10)
    failed = max(1, jobs // 20)
    cancelled = jobs // 50
    spare = jobs - bulk_parents * (shards_each + 1) - evals - failed - cancelled
    trains = max(1, spare - (1 + sweep_trials) if spare > 2 * (1 + sweep_trials) else spare)
    total = trains + jobs - spare + 1 + sweep_trials
    job_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    log_rows: list[dict[str, Any]] = []
    artifact_rows: list[dict[str, Any]] = []

    def job(
        kind: str, spec: dict[str, Any], status: JobStatus, job_id: str | None = None, **fields: Any
    ) -> str:
        job_id = job_id or f"{kind}-{len(job_rows):05d}{rng.randrange(16**4):04x}"
        created = now - timedelta(minutes=10 * (total - len(job_rows)))
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
    sweep_id = f"sweep-{len(job_rows):05d}{rng.randrange(16**4):04x}"
    sweep = _sweep(url, sweep_id, sweep_trials, random.Random(seed + 1))
    sweep_rows = _sweep_rows(sweep, job, now)
    metric_rows += sweep_rows["metrics"]
    log_rows += sweep_rows["logs"]
    artifact_rows += sweep_rows["artifacts"]
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
        session.execute(insert(Sweep), [{"job_id": sweep_id}])
        session.execute(insert(SweepTrial), sweep_rows["sweep_trials"])
    with _cnnq_database(url):
        settle(sweep.spec, sweep_id)  # its message and result, the best trial, as cnnq writes them
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
        sweep=sweep_id,
        sweep_trials=sweep_trials,
        jobs=len(job_rows),
        predictions=predictions,
    )


@dataclass
class SweptTrial:
    """One trial of the generated sweep, as its job ran it and its study was told."""

    number: int
    study_trial_id: int
    values: dict[str, Any]
    curve: list[float]
    """Its val_accuracy at each epoch it would train, were it not pruned."""
    started: int
    """The sweep's tick (an epoch of every running trial) at which it was asked for and started."""
    epochs: int = 0
    """Epochs it trained, each reported to its study."""
    status: str = "RUNNING"
    ended: int = 0


@dataclass(frozen=True)
class GeneratedSweep:
    sweep_id: str
    spec: Any
    """Its `SweepSpec`."""
    trials: list[SweptTrial]
    ticks: int


TICK_SECONDS = 30.0
"""A tick of the generated sweep: one epoch of each of its running trials."""


@contextmanager
def _cnnq_database(url: str) -> Iterator[None]:
    """cnnq's settings on the database at `url` while the block runs: where its study functions keep a
    sweep's Optuna study (`cnnq.sweeps.study.storage`)."""
    from cnnq.settings import reload_settings

    saved = os.environ.get("CNNQ_DATABASE_URL")
    os.environ["CNNQ_DATABASE_URL"] = url
    reload_settings()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CNNQ_DATABASE_URL", None)
        else:
            os.environ["CNNQ_DATABASE_URL"] = saved
        reload_settings()


def _sweep(url: str, sweep_id: str, trials: int, rng: random.Random) -> GeneratedSweep:
    """A finished sweep of `trials` trials of LeNet on MNIST, as `cnnq sweep --trials 30 --prune median
    --param ...` makes it (`SWEEP_PARAMS`, TPE, `SWEEP_PARALLEL` at a time; median pruning, which lets
    about half the trials finish, where ASHA's would let one in 27): its study made and asked by cnnq's
    study functions, each trial's epochs reported to it and judged by its pruner as a trial's job reports
    them (`cnnq.sweeps.pruning`), and each ending told as `cnnq.sweeps.trials` tells it. Only the
    training is simulated: each trial's val_accuracy per epoch, a curve whose ceiling depends on its
    values. One trial fails in its third epoch (its job killed for memory): the first after the first
    third of the sweep to get that far."""
    import optuna
    from optuna.trial import TrialState

    from cnnq.jobs.spec import TrainSpec
    from cnnq.sweeps.params import build_sweep, parse_param
    from cnnq.sweeps.study import ask, create_study, draw, load_study

    train = {"model": "lenet", "dataset": "mnist", "epochs": EPOCHS, "data_root": "/data"}
    spec = build_sweep(
        TrainSpec.model_validate(train),
        train,
        [parse_param(text) for text in SWEEP_PARAMS],
        [],
        {"trials": trials, "parallel": SWEEP_PARALLEL, "prune": "median"},
    )
    failed = False
    running: list[tuple[SweptTrial, optuna.trial.Trial]] = []
    ended: list[SweptTrial] = []
    tick = 0
    with _cnnq_database(url):
        create_study(sweep_id, spec)
        asker, teller = load_study(sweep_id, spec), load_study(sweep_id, spec)
        while running or len(ended) < trials:
            while len(running) < spec.parallel and len(running) + len(ended) < trials:
                trial = ask(asker, spec, len(running) + len(ended))
                values = draw(trial, spec)
                swept = SweptTrial(trial.number, trial._trial_id, values, _curve(values, rng), tick)
                running.append((swept, optuna.trial.Trial(teller, trial._trial_id)))
            tick += 1
            for swept, reports in list(running):
                swept.epochs += 1
                if not failed and swept.number >= trials // 3 and swept.epochs == 3:
                    swept.epochs, swept.status, failed = 2, "FAILED", True
                    teller.tell(swept.number, state=TrialState.FAIL, skip_if_finished=True)
                else:
                    reports.report(swept.curve[swept.epochs - 1], swept.epochs)
                    if reports.should_prune():
                        swept.status = "PRUNED"
                        teller.tell(swept.number, state=TrialState.PRUNED, skip_if_finished=True)
                    elif swept.epochs == EPOCHS:
                        swept.status = "SUCCEEDED"
                        value = max(swept.curve)
                        teller.tell(swept.number, value, state=TrialState.COMPLETE, skip_if_finished=True)
                    else:
                        continue
                swept.ended = tick
                running.remove((swept, reports))
                ended.append(swept)
    return GeneratedSweep(sweep_id, spec, sorted(ended, key=lambda t: t.number), tick)


def _curve(values: dict[str, Any], rng: random.Random) -> list[float]:
    """A trial's val_accuracy per epoch: best near lr 0.02 for SGD and 0.002 for Adam(W), a little
    lower for larger batches, reached sooner for smaller ones."""
    best_lr = 0.02 if values["optimizer"] == "sgd" else 0.002
    miss = math.log10(values["lr"] / best_lr)
    ceiling = 0.99 - 0.08 * miss * miss - 0.004 * values["batch_size"] / 32 + rng.gauss(0, 0.005)
    ceiling = min(0.995, max(0.15, ceiling))
    speed = rng.uniform(0.3, 0.8) * (64 / values["batch_size"]) ** 0.3
    return [
        min(0.999, max(0.05, 0.1 + (ceiling - 0.1) * (1 - math.exp(-speed * epoch)) + rng.gauss(0, 0.004)))
        for epoch in range(1, EPOCHS + 1)
    ]


def _sweep_rows(sweep: GeneratedSweep, job: Any, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """The rows cnnq keeps of `sweep` beside its study: its job, its trials' jobs (through `job`, which
    adds a job row), their metrics, logs and artifacts, and its `sweep_trials` rows."""
    from cnnq.db.status import JobStatus
    from cnnq.jobs.hyperparameters import effective_hyperparameters
    from cnnq.jobs.spec import TrainSpec
    from cnnq.sweeps.report import values_text
    from cnnq.sweeps.spec import trial_spec
    from cnnq.sweeps.trials import trial_job_id

    spec, sweep_id = sweep.spec, sweep.sweep_id
    begun = now - timedelta(seconds=TICK_SECONDS * sweep.ticks + 600)

    def at(tick: int) -> datetime:
        return begun + timedelta(seconds=TICK_SECONDS * tick)

    job(  # running until `settle` ends it, as the last trial's advance does
        "sweep",
        spec.model_dump(mode="json"),
        JobStatus.RUNNING,
        job_id=sweep_id,
        worker=None,
        device=None,
        attempts=0,
        claims=0,
        created_at=begun,
        started_at=begun,
    )
    rows: dict[str, list[dict[str, Any]]] = {"metrics": [], "logs": [], "artifacts": [], "sweep_trials": []}
    for trial in sweep.trials:
        trial_id = trial_job_id(sweep_id, trial.number)
        train = TrainSpec.model_validate(trial_spec(spec, trial.values))
        hyperparameters = effective_hyperparameters(train)
        reached = trial.curve[: trial.epochs]
        fields: dict[str, Any] = {"progress": trial.epochs / EPOCHS}
        if trial.status == "SUCCEEDED":
            best_epoch = 1 + reached.index(max(reached))
            fields = {
                "result": {"hyperparameters": hyperparameters, "epochs": EPOCHS, "best_epoch": best_epoch}
            }
        elif trial.status == "PRUNED":
            fields["message"] = f"pruned after epoch {trial.epochs}: {spec.metric} {reached[-1]:.4f}"
        else:
            fields |= {
                "error_type": "RuntimeError",
                "error_message": "DataLoader worker (pid 4242) is killed by signal: Killed.",
            }
        job(
            "train",
            train.model_dump(mode="json"),
            JobStatus(trial.status),
            job_id=trial_id,
            parent_id=sweep_id,
            created_at=at(trial.started),
            started_at=at(trial.started) + timedelta(seconds=2),
            finished_at=at(trial.ended),
            **fields,
        )
        rows["sweep_trials"].append(
            {
                "sweep_id": sweep_id,
                "number": trial.number,
                "job_id": trial_id,
                "study_trial_id": trial.study_trial_id,
                "told": True,
            }
        )
        for epoch, accuracy in enumerate(reached, start=1):
            values = {
                "train_loss": -math.log(min(0.999, accuracy + 0.01)) + 0.02,
                "train_accuracy": min(0.999, accuracy + 0.01),
                "val_loss": -math.log(accuracy),
                "val_accuracy": accuracy,
                "lr": hyperparameters["lr"] * math.sin(math.pi * epoch / (EPOCHS + 1)),
                "images_per_second": 1000.0 * 64 / (64 + trial.number % 7),
                "epoch_seconds": TICK_SECONDS - 2 + (trial.number * epoch) % 5,
            }
            rows["metrics"] += [
                {
                    "job_id": trial_id,
                    "step": epoch,
                    "name": name,
                    "value": value,
                    "time": at(trial.started + epoch),
                }
                for name, value in values.items()
            ]
        rows["logs"] += [
            {
                "job_id": trial_id,
                "time": at(trial.started + epoch),
                "line": f"epoch {epoch}: val_accuracy {value:.4f}",
            }
            for epoch, value in enumerate(reached, start=1)
        ]
        if trial.status == "SUCCEEDED":
            rows["metrics"] += [
                {"job_id": trial_id, "step": EPOCHS, "name": name, "value": value, "time": at(trial.ended)}
                for name, value in (
                    ("test_accuracy", max(reached) - 0.002),
                    ("test_loss", -math.log(max(reached))),
                )
            ]
        for kind in ("model", "checkpoint") if trial.epochs else ():
            rows["artifacts"].append(
                {
                    "job_id": trial_id,
                    "kind": kind,
                    "uri": f"/artifacts/{trial_id}/{'best' if kind == 'model' else 'last'}.pt",
                    "bytes": 250_000,
                    "sha256": "0" * 64,
                    "created_at": at(trial.ended),
                }
            )
        shown = values_text(trial.values)
        how = {"SUCCEEDED": f"{spec.metric} {max(reached) if reached else 0:.4f}", "PRUNED": "pruned"}
        rows["logs"] += [
            {
                "job_id": sweep_id,
                "time": at(trial.started),
                "line": f"trial {trial.number} ({trial_id}): {shown}",
            },
            {
                "job_id": sweep_id,
                "time": at(trial.ended),
                "line": f"trial {trial.number} ({trial_id}) ended {trial.status}: "
                + how.get(trial.status, "failed: a failed trial for the study"),
            },
        ]
    rows["logs"].sort(key=lambda row: row["time"])
    return rows


def pages(generated: Generated) -> dict[str, str]:
    """Page name -> path and query of its URL."""
    return {
        "Jobs": "jobs",
        "Job (training)": f"job?job={generated.train}",
        "Job (evaluation)": f"job?job={generated.evaluation}",
        "Job (failed)": f"job?job={generated.failed}",
        "Job (bulk parent)": f"job?job={generated.bulk}",
        "Compare": "compare",
        f"Sweep ({generated.sweep_trials} trials)": f"sweeps?sweep={generated.sweep}",
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

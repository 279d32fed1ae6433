"""Hyperparameter sweep: `cnnq sweep` on two workers against plain Optuna's `study.optimize` in one process.

Both search the same space for the same number of trials with the same sampler (TPE), pruner (ASHA, or
none), seed and warm start (trial 0: the model's recipe), and train each trial with the same function
(cnnq's `train_job`, which loads the data, trains, validates, keeps a checkpoint and tests the best epoch's
model), two at a time with one torch thread each, so the difference is the queue: trials as jobs in
Redis and SQL, a study in the job database, asks and tells from whichever worker ends a trial, each trial
in a worker's job process. (One plain process with two torch threads per trial is no fair baseline on a
shared VM: when a neighbour takes a core, two OpenMP threads wait on each other, and the run took 4x as
long in two of three tries here.)

    (a) plain Optuna, ASHA: `optuna.create_study(...).optimize(objective, n_trials, n_jobs=2)`, in memory
    (b) cnnq sweep, ASHA: real `cnnq worker --cpu --concurrency 2`, a private redis-server, SQLite
    (c) cnnq sweep, no pruning: the epochs pruning saved

Each row: wall time ((a): `optimize`; (b), (c): the first trial's start to the last one's end, workers
already warm), trials per minute, the best trial's val_accuracy (and its test_accuracy), epochs trained,
and trials pruned. `--repeats N` runs N (a)-(b) pairs back to back, the side that goes first alternating,
and shows the pair with the median ratio: a shared VM's load hits both sides of a pair alike. The goals:
(b) within 1.1x (a)'s wall time; (b) at least 40% fewer epochs than (c).

    .venv/bin/python benchmarks/sweep.py --repeats 3           # 16 trials, lenet, 5000 images, 6 epochs
    .venv/bin/python benchmarks/sweep.py --trials 8 --limit 2000 --epochs 3     # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = (REPO.parent / "shared" / "datasets").resolve()
PARAMS = ("lr=loguniform:1e-3:1", "momentum=uniform:0.5:0.99", "weight_decay=loguniform:1e-5:1e-2")


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    trials: int
    best_val: float
    best_test: float | None
    epochs: int
    pruned: int


def sweep_spec(args: argparse.Namespace, prune: str):  # type: ignore[no-untyped-def]
    """The sweep both sides run, built by the code `cnnq sweep` uses."""
    from cnnq.jobs.spec import TrainSpec
    from cnnq.sweeps.params import build_sweep, parse_param

    train = {
        "model": args.model, "dataset": "mnist", "data_root": str(args.data_root), "limit": args.limit,
        "epochs": args.epochs, "num_workers": 0, "device": "cpu", "seed": args.seed,
    }  # fmt: skip
    params = [parse_param(text) for text in PARAMS]
    settings = {"trials": args.trials, "parallel": 2, "prune": prune, "sampler": "tpe"}
    return build_sweep(TrainSpec.model_validate(train), train, params, [], settings)


def plain_optuna(spec, workdir: Path) -> Row:  # type: ignore[no-untyped-def]
    """(a): one process, one study in memory, `optimize` running the same train function in two threads."""
    import optuna
    import torch

    from cnnq.jobs.reporter import RecordingReporter
    from cnnq.jobs.spec import TrainSpec
    from cnnq.jobs.train import train_job
    from cnnq.settings import reload_settings
    from cnnq.sweeps.report import best_value
    from cnnq.sweeps.spec import trial_spec
    from cnnq.sweeps.study import pruner, suggest

    os.environ["CNNQ_TORCH_THREADS"] = "1"  # read by train_job, as a worker's job process reads it
    reload_settings()
    torch.set_num_threads(1)
    epochs = 0
    count = threading.Lock()
    tests: dict[int, float] = {}

    class PruningReporter(RecordingReporter):
        def __init__(self, trial: optuna.Trial) -> None:
            super().__init__()
            self.trial = trial

        def metrics(self, step: int, values: Mapping[str, float]) -> None:
            super().metrics(step, values)
            if spec.metric in values:
                self.trial.report(values[spec.metric], step)
                if self.trial.should_prune():
                    raise optuna.TrialPruned()

    def objective(trial: optuna.Trial) -> float:
        nonlocal epochs
        train = TrainSpec.model_validate(trial_spec(spec, suggest(trial, spec)))
        reporter = PruningReporter(trial)
        try:
            train_job(train, workdir / f"trial-{trial.number}", reporter)
        finally:
            history = reporter.history()
            with count:
                epochs += sum("epoch_seconds" in row for row in history)
        tests[trial.number] = reporter.metric_rows.get((history[-1]["epoch"], "test_accuracy"), float("nan"))
        value = best_value((row.get(spec.metric) for row in history), spec.direction)
        return float("nan") if value is None else value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True)  # as cnnq's, for parallel asks
    study = optuna.create_study(direction=spec.direction, sampler=sampler, pruner=pruner(spec))
    for values in spec.enqueue:  # trial 0: the recipe, as cnnq enqueues it
        study.enqueue_trial(
            {name: value for name, value in values.items() if spec.param(name).contains(value)},
            user_attrs={"values": values},
        )
    started = time.perf_counter()
    study.optimize(objective, n_trials=spec.trials, n_jobs=spec.parallel)
    seconds = time.perf_counter() - started
    best = study.best_trial
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return Row(
        "(a) plain Optuna, ASHA", seconds, spec.trials, best.value, tests.get(best.number), epochs, pruned
    )


@dataclass
class Stack:
    """A private redis-server, a SQLite database and two warm `cnnq worker` processes."""

    directory: Path
    redis: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = shutil.which("redis-server") or "redis-server"
        self.redis = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.environ.update(
            {
                "CNNQ_HOME": str(self.directory / "home"),
                "CNNQ_BROKER_URL": f"redis://127.0.0.1:{port}/0",
                "CNNQ_DATABASE_URL": f"sqlite:///{self.directory / 'cnnq.db'}",
                "CNNQ_ARTIFACT_ROOT": str(self.directory / "artifacts"),
                "CNNQ_TORCH_THREADS": "0",  # each of the two workers: one core's worth
            }
        )
        from cnnq.db.migrate import upgrade_database
        from cnnq.settings import reload_settings

        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        reload_settings()
        upgrade_database()
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "cnnq", "worker", "--cpu", "--concurrency", "2"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        from cnnq.db.session import dispose_engines

        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, 15)
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, 9)
        dispose_engines()
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()


def cnnq_sweep(spec, name: str) -> Row:  # type: ignore[no-untyped-def]
    """(b), (c): the sweep through the queue, timed from its first trial's start to its last one's end."""
    from sqlalchemy import func, select

    from cnnq.db.orm import Job, Metric
    from cnnq.db.session import session_scope
    from cnnq.sweeps.report import summarize
    from cnnq.sweeps.submit import submit_sweep

    sweep_id = submit_sweep(spec)
    while True:
        with session_scope() as session:
            sweep = session.get(Job, sweep_id)
            assert sweep is not None
            if sweep.status.finished:
                summary = summarize(session, sweep)
                began, ended = session.execute(
                    select(func.min(Job.started_at), func.max(Job.finished_at)).where(
                        Job.parent_id == sweep_id
                    )
                ).one()
                best = summary.best
                if best is None:
                    errors = session.scalars(select(Job.error_message).where(Job.parent_id == sweep_id)).all()
                    raise SystemExit(f"sweep {sweep_id}: {summary.message}: {errors}")
                test = session.scalar(
                    select(Metric.value).where(Metric.job_id == best.job_id, Metric.name == "test_accuracy")
                )
                break
        time.sleep(0.2)
    return Row(
        name,
        (ended - began).total_seconds(),
        len(summary.trials),
        best.value or 0.0,
        test,
        sum(t.epochs for t in summary.trials),
        summary.counts.get("PRUNED", 0),
    )


def warm_up(args: argparse.Namespace) -> None:
    """A small sweep first, so that both workers' job processes hold torch, the job code and Optuna."""
    import copy

    quick = copy.copy(args)
    quick.trials, quick.limit, quick.epochs = 2, 200, 1
    cnnq_sweep(sweep_spec(quick, "none"), "warm-up")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=1, help="(a)-(b) pairs, back to back, order alternating"
    )
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console()
    pairs: list[tuple[Row, Row]] = []
    with tempfile.TemporaryDirectory(prefix="cnnq-sweep-bench-") as tmp:
        directory = Path(tmp)
        stack = Stack(directory)
        stack.start()
        try:
            warm_up(args)
            for repeat in range(args.repeats):
                runs = {
                    "plain": lambda n=repeat: plain_optuna(
                        sweep_spec(args, "asha"), directory / f"plain-{n}"
                    ),
                    "cnnq": lambda: cnnq_sweep(sweep_spec(args, "asha"), "(b) cnnq sweep, 2 workers, ASHA"),
                }
                done = {
                    key: runs[key]() for key in (("plain", "cnnq") if repeat % 2 == 0 else ("cnnq", "plain"))
                }
                pairs.append((done["plain"], done["cnnq"]))
                console.print(
                    f"pair {repeat + 1}: plain {done['plain'].seconds:.1f}s, cnnq {done['cnnq'].seconds:.1f}s"
                )
            full = cnnq_sweep(sweep_spec(args, "none"), "(c) cnnq sweep, 2 workers, no pruning")
        finally:
            stack.stop()

    ratios = [cnnq.seconds / plain.seconds for plain, cnnq in pairs]
    middle = sorted(range(len(pairs)), key=lambda i: ratios[i])[len(pairs) // 2]
    plain, asha = pairs[middle]
    title = f"{args.trials}-trial sweep: {args.model}, MNIST ({args.limit} images), {args.epochs} epochs"
    table = Table(title=title)
    for header in ("", "wall s", "trials/min", "best val_accuracy", "its test_accuracy", "epochs", "pruned"):
        table.add_column(header, justify="left" if not header else "right")
    for row in (plain, asha, full):
        table.add_row(
            row.name,
            f"{row.seconds:.1f}",
            f"{row.trials / row.seconds * 60:.1f}",
            f"{row.best_val:.4f}",
            "" if row.best_test is None else f"{row.best_test:.4f}",
            str(row.epochs),
            str(row.pruned),
        )
    console.print(table)
    console.print(
        f"cnnq / plain Optuna wall time: {median(ratios):.2f}x, the median of {len(ratios)} pairs "
        f"({', '.join(f'{r:.2f}' for r in ratios)}; goal: at most 1.1x); epochs trained with ASHA: "
        f"{1 - asha.epochs / full.epochs:.0%} fewer than without (goal: at least 40%)"
    )


if __name__ == "__main__":
    main()

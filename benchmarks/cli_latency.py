"""CLI latency: wall time and peak memory of `cnnq` commands beside the import floor of its dependencies.

Each command runs as a fresh `python -m cnnq ...` process, as a user's shell, a script or
`watch` runs it, against a database of 1,000 jobs (SQLite in a temporary folder by default, or
`--database-url`) and a real Redis (`--broker-url`, default 127.0.0.1:6379; the submitted jobs go to a
private queue that is deleted afterwards). The floor is the plain alternative: a process that only
imports the CLI's dependencies, `python -c "import celery, sqlalchemy, typer, rich, redis,
pydantic_settings"`. Every round runs the floor and each command once, in turn, so drift in the
machine's speed hits all of them alike; a first round warms the file cache and compiles every module's
bytecode (into a temporary folder, as an installed package has it) and is not counted.
Figures are medians over `--repeats` rounds; peak memory is the child's maximum resident set
(`wait4`'s ru_maxrss). Linux counts in it the parent's resident set at the fork, so this process
imports nothing but the standard library while it measures: filling the database and deleting the
queue run in child processes of their own.

Goal: every command within 1.3x the floor's wall time and under 120 MB. The CPU time (user + system)
of each is shown too: on a shared machine it varies less than the wall time.

    .venv/bin/python benchmarks/cli_latency.py
    .venv/bin/python benchmarks/cli_latency.py --repeats 3 --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

FLOOR = "import celery, sqlalchemy, typer, rich, redis, pydantic_settings"
JOBS = 1000
GOAL_RATIO = 1.3
GOAL_MB = 120


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak resident MB) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"cli_latency: {' '.join(argv[2:])} exited {child.returncode}: {stderr.strip()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def write_tiny_mnist(root: Path) -> Path:
    """MNIST's four IDX files, each with no images: all `cnnq submit` checks is that they are there."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 0, 28, 28))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 0))
    return root


def fill_database(count: int) -> str:
    """`count` jobs of every kind and status, inserted in one statement; returns a finished job's id."""
    from sqlalchemy import insert

    from cnnq.db.jobs import new_job_id
    from cnnq.db.orm import Job
    from cnnq.db.session import session_scope
    from cnnq.db.status import JobStatus

    statuses = [JobStatus(name) for name in ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")]
    kinds = ("train", "eval", "infer")
    now = datetime.now(UTC)
    rows = []
    for index in range(count):
        kind, status = kinds[index % 3], statuses[index % len(statuses)]
        started = now - timedelta(minutes=count - index)
        rows.append(
            {
                "id": new_job_id(kind),
                "kind": kind,
                "spec": {"kind": kind, "model": "lenet", "dataset": "mnist", "epochs": 5, "batch_size": 64},
                "status": status,
                "priority": 0,
                "queue": "cpu",
                "attempts": 1 if status != JobStatus.QUEUED else 0,
                "progress": 1.0 if status.finished else 0.0,
                "cancel_requested": False,
                "created_at": started,
                "started_at": None if status == JobStatus.QUEUED else started,
                "finished_at": started + timedelta(seconds=30) if status.finished else None,
                "message": f"epoch 5/5: val_accuracy 0.99 ({index})",
            }
        )
    with session_scope() as session:
        session.execute(insert(Job), rows)
    return next(r["id"] for r in rows[count // 2 :] if r["status"] == JobStatus.SUCCEEDED)


def delete_queue(queue: str) -> None:
    from cnnq.lifecycle.broker import redis_client
    from cnnq.lifecycle.queues import priority_keys

    keys = [*priority_keys(queue), f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
    redis_client().delete(*keys)


def setup() -> None:
    """(In a child process.) Migrate the database and fill it; print the id of a job to show."""
    from cnnq.db.migrate import upgrade_database

    upgrade_database()
    print(fill_database(JOBS))


def in_child(options: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, __file__, *options], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7, help="Rounds counted (after one warm-up round).")
    parser.add_argument("--database-url", help="Default: SQLite in a temporary folder.")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--delete-queue", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup()
        return
    if args.delete_queue:
        delete_queue(args.delete_queue)
        return

    with tempfile.TemporaryDirectory(prefix="cnnq-cli-latency-") as folder:
        home = Path(folder)
        database_url = args.database_url or f"sqlite:///{home / 'cnnq.db'}"
        queue = f"cli-latency-{os.getpid()}"
        env = {
            **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
            "PYTHONPYCACHEPREFIX": str(home / "bytecode"),  # compiled in the warm-up round, as installed
            "CNNQ_HOME": str(home),
            "CNNQ_DATABASE_URL": database_url,
            "CNNQ_BROKER_URL": args.broker_url,
            "CNNQ_ARTIFACT_ROOT": str(home / "artifacts"),
        }
        shown = in_child(["--setup"], env)
        mnist = write_tiny_mnist(home / "data")
        python = [sys.executable]
        cnnq = [*python, "-m", "cnnq"]
        commands = {
            "import floor": [*python, "-c", FLOOR],
            "cnnq --help": [*cnnq, "--help"],
            "cnnq jobs": [*cnnq, "jobs"],
            "cnnq show JOB --json": [*cnnq, "show", shown, "--json"],
            "cnnq workers": [*cnnq, "workers"],
            "cnnq submit train ...": [
                *cnnq,
                "submit",
                "train",
                *("--model", "lenet", "--dataset", "mnist", "--epochs", "1"),
                *("--data-root", str(mnist), "--queue", queue),
            ],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        try:
            for round_ in range(args.repeats + 1):
                for name, argv in commands.items():
                    wall, cpu, peak = run_measured(argv, env)
                    if round_:  # round 0 warms the file cache
                        walls[name].append(wall)
                        cpus[name].append(cpu)
                        peaks[name].append(peak)
        finally:
            in_child(["--delete-queue", queue], env)

    from rich.console import Console
    from rich.table import Table

    floor, floor_cpu = median(walls["import floor"]), median(cpus["import floor"])
    table = Table(title=f"cnnq CLI against {JOBS:,} jobs: median of {args.repeats} runs each")
    columns = ("command", "wall s", "vs floor", "CPU s", "vs floor", "peak MB", "goal")
    for column in columns:
        table.add_column(column, justify="left" if column == "command" else "right")
    for name in commands:
        wall, cpu, peak = median(walls[name]), median(cpus[name]), median(peaks[name])
        met = wall <= GOAL_RATIO * floor and peak < GOAL_MB
        goal = "" if name == "import floor" else ("met" if met else "NOT met")
        table.add_row(
            name,
            f"{wall:.2f}",
            f"{wall / floor:.2f}x",
            f"{cpu:.2f}",
            f"{cpu / floor_cpu:.2f}x",
            f"{peak:.0f}",
            goal,
        )
    table.caption = f"goal: wall time within {GOAL_RATIO}x the floor's, peak memory under {GOAL_MB} MB"
    console = Console()
    console.print(table)
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = models[0] if models else platform.processor()
    console.print(
        f"{os.cpu_count()} x {cpu}, Python {platform.python_version()}, database "
        f"{database_url.split(':', 1)[0]}",
        highlight=False,
    )


if __name__ == "__main__":
    main()

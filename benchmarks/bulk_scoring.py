"""Bulk scoring throughput: images per second on a folder of JPEG chest X-rays.

    (a) a plain loop: PIL decode, resize, tensor, the PyTorch model one image at a time
    (b) one cnnq worker (`cnnq worker --cpu`), eager engine
    (c) one cnnq worker, ONNX Runtime engine (fp32)
    (c8) one cnnq worker, ONNX Runtime on the int8 model, labels held to fp32's (`--engine onnx-int8`)
    (d1) one worker pinned to one core (the unit (d) scales out), the default CPU engine
    (d) two workers, each pinned to its own core, one bulk job of two shards, the default CPU engine
    (d1f), (df) the same two with the fp32 ONNX engine, where the default engine is int8

Everything real: a private redis-server, a SQLite database, `cnnq worker` processes, `cnnq submit`'s
code path. A worker figure comes from the job and prediction rows, twice: "span" is the inputs divided
by the time from the first shard's start to the last shard's end (job process start, model load,
decoding, scoring and the SQL inserts all count; queueing before the start does not); "steady" leaves
out each run's first batch: the rate a long shard keeps (the plain loop's figure leaves out its model
load too). The ONNX export is made once before the runs, as the first shard of a real bulk job makes
it once for all of them; (c8) quantizes the model in its run, as a first job does, and (d1) and (d)
reuse that. The default CPU engine is onnx-int8 where the CPU has VNNI or AMX, else onnx. (d1) and
(d) run `--repeats` times as back-to-back pairs: their rates are medians, and (d) vs (d1) is the
median of the pairs' ratios (single runs on a shared 2-core VM vary by 5-10%). Goals on a
2-core machine: (b) >= 1.0x (a), ONNX Runtime >= 2x (a), (d) >= 1.7x (d1).

The small-image row: 100,000 28x28 grayscale PNGs made from the real MNIST test set (its 10,000 images,
each copy past the first shifted by a pixel or two, so that every file differs; written once into
`--cache`), scored with LeNet (untrained: the speed is what counts), by
    (s) a plain loop: PIL decode and the same model in batches of 256, one process, 2 torch threads
    (sq) cnnq: `cnnq submit infer --model-from MODEL --input DIR` with default options (so
        `--shard-size auto`), two warm `cnnq worker --cpu` processes, each pinned to a core, PostgreSQL
        (`--small-db`), timed from the submit command's start to the parent job's SUCCEEDED row.
Goal: (sq) >= 0.8x (s).

    .venv/bin/python benchmarks/bulk_scoring.py                         # 2000 JPEGs, resnet18 at 224
    .venv/bin/python benchmarks/bulk_scoring.py --images 60 --model simple-cnn --image-size 64 \
        --small-images 2000                                             # smoke
    .venv/bin/python benchmarks/bulk_scoring.py --images 0 --small-images 10000    # the small row only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from cnnq.jobs.engines import resolve_engine

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def make_jpegs(folder: Path, count: int, size: int) -> list[str]:
    """Grayscale 'chests' (two dark lungs, some with bright blobs) as JPEG files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    lungs = (((xx - 0.3) / 0.16) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1) | (
        ((xx - 0.7) / 0.16) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1
    )
    paths = []
    for i in range(count):
        pixels = 150 + rng.normal(0, 12, size=(size, size)) - 90 * lungs
        if i % 3 == 0:
            cx, cy = rng.uniform(0.25, 0.75), rng.uniform(0.35, 0.65)
            pixels[((xx - cx) / 0.08) ** 2 + ((yy - cy) / 0.08) ** 2 < 1] += 100
        path = folder / f"{i // 500:03d}" / f"xray_{i:06d}.jpeg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def make_model_file(path: Path, model: str, image_size: int) -> Path:
    from cnnq.jobs.checkpoint import ModelInfo, load_model_file, save_model_file
    from cnnq.jobs.onnx_engine import export_onnx, onnx_path_for
    from cnnq.models.registry import build_model

    torch.manual_seed(0)
    network = build_model(model, in_channels=1, image_size=image_size, num_classes=2)
    info = ModelInfo(
        model, 1, image_size, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,), positive_class="PNEUMONIA"
    )
    save_model_file(path, network, info)
    loaded = load_model_file(path)
    export_onnx(loaded, onnx_path_for(loaded, path.parent))
    return path


def plain_loop(paths: list[str], model_file: Path) -> float:
    """(a): the loop a PyTorch user writes first. Images per second."""
    from cnnq.jobs.checkpoint import load_model_file

    torch.set_num_threads(os.cpu_count() or 1)
    loaded = load_model_file(model_file)
    size, mean, std = loaded.info.image_size, loaded.info.mean[0], loaded.info.std[0]
    model = loaded.model.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("L").resize((size, size), Image.Resampling.BILINEAR)
            x = (torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0) - mean) / std
            torch.softmax(model(x[None, None]), dim=1)
    return len(paths) / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """A redis-server and a SQLite database for this run, with cnnq's settings pointed at them."""

    directory: Path
    redis: subprocess.Popen[bytes] | None = None
    database_url: str | None = None
    """Default: a SQLite file in `directory`."""

    def start(self) -> None:
        port = _free_port()
        server = shutil.which("redis-server") or "redis-server"
        options = ["--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.redis = subprocess.Popen(
            [server, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        os.environ.update(
            {
                "CNNQ_HOME": str(self.directory / "home"),
                "CNNQ_BROKER_URL": f"redis://127.0.0.1:{port}/0",
                "CNNQ_DATABASE_URL": self.database_url or f"sqlite:///{self.directory / 'cnnq.db'}",
                "CNNQ_ARTIFACT_ROOT": str(self.directory / "artifacts"),
            }
        )
        from cnnq.db.migrate import upgrade_database
        from cnnq.settings import reload_settings

        reload_settings()
        upgrade_database()

    def stop(self) -> None:
        from cnnq.db.session import dispose_engines

        dispose_engines()
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait()

    @contextlib.contextmanager
    def workers(self, cores: list[int] | None) -> Iterator[None]:
        """One `cnnq worker --cpu` using every core (None), or one per listed core, pinned to it."""
        from sqlalchemy import select

        from cnnq.db.orm import Worker
        from cnnq.db.session import session_scope

        env = {k: v for k, v in os.environ.items() if k != "CNNQ_TORCH_THREADS"}
        processes = []
        for core in cores or [None]:
            pin = (lambda c=core: os.sched_setaffinity(0, {c})) if core is not None else None
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cnnq", "worker", "--cpu"],
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=pin,
                )
            )
        pids = {str(p.pid) for p in processes}
        deadline = time.monotonic() + 120
        while True:
            with session_scope() as s:
                names = s.scalars(select(Worker.name).where(Worker.stopped_at.is_(None))).all()
            if sum(any(f"-{pid}@" in name for name in names) for pid in pids) == len(processes):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not register")
            time.sleep(0.2)
        wait_until_idle({p.pid for p in processes})
        try:
            yield
        finally:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 15)
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
            with session_scope() as s:  # the next run counts only its own workers
                for worker in s.scalars(select(Worker).where(Worker.stopped_at.is_(None))):
                    s.delete(worker)


def _session_cpu_ticks(sessions: set[int]) -> int:
    """CPU ticks used so far by every process in these sessions (a worker and its job processes)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) in sessions:  # field 6 of stat: the session id
                total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def wait_until_idle(sessions: set[int], timeout: float = 180.0) -> None:
    """Wait until the workers have started their job processes and those have imported torch: the
    workers' sessions use under a tenth of a core over a second, as a warm cluster's do."""
    deadline = time.monotonic() + timeout
    before = _session_cpu_ticks(sessions)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _session_cpu_ticks(sessions)
        if now - before < os.sysconf("SC_CLK_TCK") // 10:
            return
        before = now
    raise RuntimeError("the workers did not settle")


@dataclass(frozen=True)
class Rate:
    span: float
    """Inputs / (first shard start .. last shard end): process start, model load and all."""
    steady: float
    """Inputs after the first batch / (first batch insert .. last insert): the rate a long shard keeps."""


def bulk_rate(folder: Path, count: int, model_file: Path, engine: str, shard_size: int) -> tuple[Rate, str]:
    """Submit one bulk infer job, wait for it, and measure it from its job and prediction rows; with
    a line on how the int8 engine scored, if it did."""
    from sqlalchemy import func, select

    from cnnq.db.jobs import children_of, get_job
    from cnnq.db.orm import Prediction
    from cnnq.db.session import session_scope
    from cnnq.jobs.spec import InferSpec
    from cnnq.lifecycle.submit import Placement, submit_job

    spec = InferSpec(
        model_from=str(model_file),
        model_file=model_file,
        input=str(folder),
        engine=engine,  # type: ignore[arg-type]
        shard_size=shard_size,
        device="cpu",
    )
    job_id = submit_job(spec, Placement(queue="cpu"))
    while True:
        with session_scope() as s:
            job = get_job(s, job_id)
            if job.status.finished:
                leaves = children_of(s, job_id) or [job]
                mine = Prediction.bulk_id == job_id
                rows = s.scalar(select(func.count()).where(mine)) or 0
                first, last = s.execute(
                    select(func.min(Prediction.time), func.max(Prediction.time)).where(mine)
                ).one()
                first_batch = s.scalar(select(func.count()).where(mine, Prediction.time == first)) or 0
                break
        time.sleep(0.2)
    if str(job.status) != "SUCCEEDED" or rows != count:
        raise RuntimeError(
            f"job {job_id} ended {job.status} with {rows} of {count} rows: {job.error_message}"
        )
    started = min(leaf.started_at for leaf in leaves if leaf.started_at)
    ended = max(leaf.finished_at for leaf in leaves if leaf.finished_at)
    reports = [leaf.result.get("engine_report") for leaf in leaves if leaf.result]
    int8 = [report for report in reports if report]
    note = ""
    if int8:
        rescored = sum(r["near_boundary_rescored"] for r in int8)
        checked = [r["max_difference"] for r in int8 if r["max_difference"] is not None]
        note = (
            f"int8 scored {sum(r['int8_scored'] for r in int8)}, fp32 {sum(r['fp32_scored'] for r in int8)} "
            f"({rescored} near the boundary); the int8 model's measure (largest difference from fp32) "
            f"{max(checked, default=float('nan')):.4f}"
        )
    rate = Rate(
        count / (ended - started).total_seconds(), (count - first_batch) / (last - first).total_seconds()
    )
    return rate, note


def jpeg_rows(args: argparse.Namespace, console: Console) -> None:
    """Rows (a) to (df): JPEG chest X-rays and the model of `--model`."""
    cores = sorted(os.sched_getaffinity(0))

    with tempfile.TemporaryDirectory(prefix="cnnq-bench-") as tmp:
        directory = Path(tmp)
        console.print(f"writing {args.images} JPEGs of {args.jpeg_size} px ...")
        paths = make_jpegs(directory / "jpegs", args.images, args.jpeg_size)
        model_file = make_model_file(directory / "models" / "model.pt", args.model, args.image_size)
        rates: dict[str, Rate] = {}
        notes: dict[str, str] = {}
        default = resolve_engine("auto", torch.device("cpu"))
        scaling = {"": default, **({"f": "onnx"} if default != "onnx" else {})}
        """(d1) and (d) run with the default engine, and also with fp32 ONNX where that is not it."""
        console.print("(a) plain loop ...")
        plain = plain_loop(paths, model_file)
        rates["a"] = Rate(plain, plain)
        stack = Stack(directory)
        stack.start()
        try:
            folder, n = directory / "jpegs", args.images
            runs = [("b", "eager", None, n), ("c", "onnx", None, n), ("c8", "onnx-int8", None, n)]
            for _ in range(args.repeats):
                for suffix, engine in scaling.items():
                    runs.append((f"d1{suffix}", engine, cores[:1], n))
                    runs.append((f"d{suffix}", engine, cores[:2], -(-n // 2)))
            measured: dict[str, list[Rate]] = {}
            for key, engine, pinned, shard in runs:
                console.print(f"({key}) {engine}, workers on cores {pinned or 'all'} ...")
                with stack.workers(pinned):
                    rate, notes[key] = bulk_rate(folder, n, model_file, engine, shard)
                measured.setdefault(key, []).append(rate)
            for key, runs_of_key in measured.items():
                rates[key] = Rate(median(r.span for r in runs_of_key), median(r.steady for r in runs_of_key))
        finally:
            stack.stop()

    labels = {
        "a": "(a) plain loop: PIL + PyTorch, one image at a time",
        "b": "(b) one cnnq worker, eager engine",
        "c": "(c) one cnnq worker, ONNX Runtime fp32",
        "c8": "(c8) one cnnq worker, ONNX Runtime int8",
        "d1": f"(d1) one worker pinned to one core, {default}",
        "d": f"(d) two workers, one core each, {default}",
        "d1f": "(d1f) one worker pinned to one core, onnx (fp32)",
        "df": "(df) two workers, one core each, onnx (fp32)",
    }
    labels = {key: label for key, label in labels.items() if key in rates}
    table = Table(
        title=f"{args.images} JPEGs ({args.jpeg_size} px), {args.model} at {args.image_size} px, "
        f"{len(cores)} cores"
    )
    table.add_column("configuration")
    table.add_column("images/s span", justify="right")
    table.add_column("vs (a)", justify="right")
    table.add_column("images/s steady", justify="right")
    table.add_column("vs (a)", justify="right")
    base = rates["a"].steady
    for key, label in labels.items():
        rate = rates[key]
        table.add_row(
            label,
            f"{rate.span:.1f}",
            f"{rate.span / base:.2f}x",
            f"{rate.steady:.1f}",
            f"{rate.steady / base:.2f}x",
        )
    console.print(table)
    for key, note in notes.items():
        if note:
            console.print(f"({key}) {note}")
    for suffix, engine in scaling.items():
        single = "c8" if engine == "onnx-int8" else "c"
        one, two = measured[f"d1{suffix}"], measured[f"d{suffix}"]
        for kind in ("span", "steady"):
            pairs = [getattr(d, kind) / getattr(d1, kind) for d1, d in zip(one, two, strict=True)]
            versus = getattr(rates[f"d{suffix}"], kind) / getattr(rates[single], kind)
            console.print(
                f"{engine} {kind}: (d{suffix}) vs (d1{suffix}), the single worker it scales from: "
                f"{median(pairs):.2f}x, the median of {len(pairs)} back-to-back pairs "
                f"({', '.join(f'{r:.2f}' for r in pairs)}); (d{suffix}) vs ({single}): {versus:.2f}x"
            )


MNIST_TEST_IMAGES = REPO.parent / "shared" / "datasets" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
SHIFTS = sorted(
    ((dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)), key=lambda s: (abs(s[0]) + abs(s[1]), s)
)
"""Copy k of the MNIST test set is shifted by SHIFTS[k] (the first not at all): 49 distinct copies."""
PLAIN_BATCH = 256
PLAIN_THREADS = 2


def mnist_pngs(count: int, cache: Path) -> Path:
    """A folder of `count` 28x28 grayscale PNGs from the real MNIST test set, written once into `cache`
    (in folders of 1000), each copy of the 10,000 past the first shifted by a pixel or more."""
    folder = cache / f"mnist-png-{count}"
    if folder.is_dir():
        return folder
    digits = np.frombuffer(MNIST_TEST_IMAGES.read_bytes(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    if count > len(digits) * len(SHIFTS):
        raise SystemExit(f"--small-images: at most {len(digits) * len(SHIFTS)} distinct images")
    partial = cache / f"mnist-png-{count}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for index in range(count):
        copy, digit = divmod(index, len(digits))
        pixels = np.roll(digits[digit], SHIFTS[copy], axis=(0, 1))
        path = partial / f"{index // 1000:03d}" / f"mnist_{index:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(path)
    partial.rename(folder)
    return folder


def make_lenet_file(path: Path) -> Path:
    """An untrained LeNet for 28x28 grayscale digits in cnnq's model-file format."""
    from cnnq.jobs.checkpoint import ModelInfo, save_model_file
    from cnnq.models.registry import build_model

    torch.manual_seed(0)
    network = build_model("lenet", in_channels=1, image_size=28, num_classes=10)
    save_model_file(
        path, network, ModelInfo("lenet", 1, 28, [str(d) for d in range(10)], (0.1307,), (0.3081,))
    )
    return path


def plain_batched_loop(folder: Path, model_file: Path) -> float:
    """(s): list the PNGs, PIL-decode them and score them with the model in batches of 256, one
    process, 2 torch threads. Images per second (model load left out)."""
    from cnnq.jobs.checkpoint import load_model_file

    torch.set_num_threads(PLAIN_THREADS)
    loaded = load_model_file(model_file)
    model = loaded.model.eval()
    mean, std = loaded.info.mean[0], loaded.info.std[0]
    started = time.perf_counter()
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    with torch.inference_mode():
        for start in range(0, len(paths), PLAIN_BATCH):
            pixels = np.stack(
                [np.asarray(Image.open(p).convert("L")) for p in paths[start : start + PLAIN_BATCH]]
            )
            x = torch.from_numpy(pixels).float().div_(255.0).sub_(mean).div_(std)[:, None]
            torch.softmax(model(x), dim=1)
    return len(paths) / (time.perf_counter() - started)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of `admin_url`, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"cnnq_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from cnnq.db.session import dispose_engines

        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class BulkRun:
    seconds: float
    """From the submit command's start to the parent's SUCCEEDED row."""
    submitted: float
    """From its start until `cnnq submit` returned (CLI start-up, listing, rows, messages)."""
    shards: list[int]
    plan: str
    timeline: list[str]
    """Each shard's claim and end, and the parent's end, in seconds from the parent's row."""
    row_at: float
    """When `cnnq submit` created the parent's row, in seconds from its start."""


def cnnq_submit_to_succeeded(folder: Path, count: int, model_file: Path) -> BulkRun:
    """(sq): `cnnq submit infer` with default options, timed until the parent's row is SUCCEEDED."""
    from cnnq.db.jobs import children_of, get_job
    from cnnq.db.records import log_lines
    from cnnq.db.session import session_scope

    command = [sys.executable, "-m", "cnnq", "submit", "infer", "--model-from", str(model_file)]
    started, wall = time.perf_counter(), time.time()
    done = subprocess.run(
        [*command, "--input", str(folder), "--json"], capture_output=True, text=True, cwd=REPO
    )
    submitted = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cnnq submit failed: {done.stderr.strip()}")
    job_id = json.loads(done.stdout)["id"]
    while True:
        with session_scope() as s:
            job = get_job(s, job_id)
            if job.status.finished:
                seconds = time.perf_counter() - started
                children = children_of(s, job_id)
                shards = [len(child.spec.get("inputs") or ()) for child in children]
                timeline = [
                    f"{index}: {_since(job, child.claimed_at)}-{_since(job, child.finished_at)}"
                    for index, child in enumerate(children, start=1)
                ] + [f"parent ended {_since(job, job.finished_at)}"]
                row_at = job.created_at.timestamp() - wall
                plan = next(
                    (line.line for line in log_lines(s, job_id) if "first shard scored" in line.line), ""
                )
                result, status, message = job.result or {}, str(job.status), job.error_message
                break
        time.sleep(0.05)
    if status != "SUCCEEDED" or result.get("inputs") != count:
        raise RuntimeError(
            f"job {job_id} ended {status} with {result.get('inputs')} of {count} rows: {message}"
        )
    return BulkRun(seconds, submitted, shards, plan, timeline, row_at)


def _since(parent: Any, moment: Any) -> str:
    return "?" if moment is None else f"{(moment - parent.created_at).total_seconds():.1f}"


def small_image_row(args: argparse.Namespace, console: Console) -> None:
    """Rows (s) and (sq): small images, LeNet, a plain loop against cnnq from submit to SUCCEEDED."""
    cores = sorted(os.sched_getaffinity(0))
    console.print(f"the small-image row: {args.small_images} MNIST PNGs in {args.cache} ...")
    folder = mnist_pngs(args.small_images, args.cache)
    with tempfile.TemporaryDirectory(prefix="cnnq-bench-small-") as tmp:
        directory = Path(tmp)
        model_file = make_lenet_file(directory / "models" / "lenet.pt")
        console.print("(s) plain loop ...")
        plain = plain_batched_loop(folder, model_file)
        database = (
            contextlib.nullcontext(None) if args.small_db == "sqlite" else postgres_database(args.small_db)
        )
        with database as url:
            stack = Stack(directory, database_url=url)
            stack.start()
            try:
                console.print(f"(sq) cnnq, two workers on cores {cores[:2]}, {url or 'SQLite'} ...")
                with stack.workers(cores[:2]):
                    run = cnnq_submit_to_succeeded(folder, args.small_images, model_file)
            finally:
                stack.stop()

    rate = args.small_images / run.seconds
    table = Table(title=f"{args.small_images} MNIST PNGs (28x28), LeNet, {len(cores)} cores")
    table.add_column("configuration")
    table.add_column("images/s", justify="right")
    table.add_column("vs (s)", justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(
        f"(s) plain loop: PIL + PyTorch, batches of {PLAIN_BATCH}, {PLAIN_THREADS} threads",
        f"{plain:.0f}",
        "1.00x",
        f"{args.small_images / plain:.1f}",
    )
    table.add_row(
        "(sq) cnnq, 2 workers, default options, submit to SUCCEEDED",
        f"{rate:.0f}",
        f"[bold]{rate / plain:.2f}x[/bold]",
        f"{run.seconds:.1f}",
    )
    console.print(table)
    after_row = args.small_images / (run.seconds - run.row_at)
    console.print(
        f"(sq) from the parent's row on, the submit command's own start-up left out: {after_row:.0f} "
        f"images/s, {after_row / plain:.2f}x (s)"
    )
    sizes = ", ".join(str(size) for size in run.shards)
    console.print(
        f"(sq) `cnnq submit` created the parent's row after {run.row_at:.1f} s and returned after "
        f"{run.submitted:.1f} s; {len(run.shards)} shards ({sizes})"
    )
    if run.plan:
        console.print(f"(sq) {run.plan}")
    console.print(f"(sq) seconds from the parent's row, shard by shard: {'; '.join(run.timeline)}")
    console.print(f"goal: (sq) >= 0.8x (s): {'met' if rate / plain >= 0.8 else 'not met'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000, help="JPEG files to score (0: no JPEG rows)")
    parser.add_argument("--jpeg-size", type=int, default=512, help="pixels per side of each JPEG")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224, help="the model's input size")
    parser.add_argument(
        "--repeats", type=int, default=3, help="(d1), (d) pairs run back to back; medians count"
    )
    parser.add_argument(
        "--small-images", type=int, default=100_000, help="MNIST PNGs of the small-image row (0: no row)"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "cnnq-bench", help="where the PNGs are kept"
    )
    parser.add_argument(
        "--small-db",
        default=POSTGRES_ADMIN_URL,
        help="the small-image row's database: a PostgreSQL server's admin URL (a database is created on "
        "it and dropped), or `sqlite`",
    )
    args = parser.parse_args(argv)
    console = Console(width=140)
    if args.images:
        jpeg_rows(args, console)
    if args.small_images:
        small_image_row(args, console)


if __name__ == "__main__":
    main()

"""GPU checks on a CUDA machine: pinning, mixed precision, channels_last, half-precision bulk scoring.

Four stages, each reported as it ends (one JSON object per line in `--out`), each allowed to fail
without stopping the next:

    env        torch, the GPU, what `nvidia-smi` lists for `cnnq worker --gpus`, the precision plans
    train      one real-MNIST epoch per row: a plain PyTorch loop against cnnq's train job in fp32,
               then cnnq in fp16 (GradScaler), bf16 and channels_last, with images/s and test accuracy
    recipes    5-epoch mnist-cnn runs of candidate default recipes, two seeds each (until --deadline)
    stack      a real redis-server and `cnnq worker --gpus all`: a submitted fp16 + channels_last
               train job must run on the pinned GPU; an X-ray resnet18 is trained there, then a bulk
               job of generated 512 px JPEGs is scored by the GPU worker (eager engine, fp16) and
               its labels are compared with the same model scored in fp32 on the CPU

    python benchmarks/gpu_check.py --data-root DIR --out report.jsonl --stages env,train,stack
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bulk_scoring import Stack, make_jpegs  # noqa: E402
from benchmarks.train_throughput import plain_epoch  # noqa: E402
from cnnq.data.registry import load_dataset  # noqa: E402
from cnnq.jobs.device import configure_cpu, pick_device, plan_precision  # noqa: E402
from cnnq.jobs.reporter import RecordingReporter  # noqa: E402
from cnnq.jobs.spec import TrainSpec  # noqa: E402
from cnnq.jobs.train import data_request, train_job  # noqa: E402

RECIPES: dict[str, dict[str, Any]] = {
    # Options on top of the model's own recipe (`cnnq models`); "default" is that recipe alone.
    "default": {},
    "sgd": {"optimizer": "sgd", "augment": "none"},
    "sgd-aug-r10-s0.1": {"optimizer": "sgd", "augment": "rotation=10,shift=0.1"},
    "sgd-aug-r10-s0.1-z0.1": {"optimizer": "sgd", "augment": "rotation=10,shift=0.1,zoom=0.1"},
    "sgd-aug-ls0.1": {"optimizer": "sgd", "augment": "rotation=10,shift=0.1", "label_smoothing": 0.1},
    "adam": {"optimizer": "adam", "augment": "none"},
    "adam-aug-r10-s0.1": {"optimizer": "adam", "augment": "rotation=10,shift=0.1"},
    "adam-aug-r15-s0.1": {"optimizer": "adam", "augment": "rotation=15,shift=0.1"},
    "adamw-aug": {"optimizer": "adamw", "weight_decay": 0.05, "augment": "rotation=10,shift=0.1"},
    "adam-aug-bs128": {"optimizer": "adam", "augment": "rotation=10,shift=0.1", "batch_size": 128},
    "adam-aug-val0.05": {"optimizer": "adam", "augment": "rotation=10,shift=0.1", "val_split": 0.05},
}


@dataclass(frozen=True)
class Check:
    data_root: Path
    out: Path
    device: str
    limit: int | None
    images: int
    recipes: tuple[str, ...] = tuple(RECIPES)
    seeds: tuple[int, ...] = (0, 1)
    models: tuple[str, ...] = ("mnist-cnn", "lenet")
    deadline: float = 0.0


def emit(out: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, default=str)
    print(line, flush=True)
    with out.open("a") as handle:
        handle.write(line + "\n")


def stage_env(check: Check) -> None:
    from cnnq.workers.gpus import visible_gpus

    device = torch.device(check.device)
    emit(
        check.out,
        {
            "stage": "env",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
            "visible_gpus": [gpu.__dict__ for gpu in visible_gpus()],
            "pick_device": str(pick_device("auto")),
            "plans": {p: plan_precision(p, device).name for p in ("fp32", "fp16", "bf16")},
            "threads": configure_cpu(),
        },
    )


def _cnnq_epoch(spec: TrainSpec) -> tuple[float, float, list[str]]:
    reporter = RecordingReporter()
    with tempfile.TemporaryDirectory() as scratch:
        train_job(spec, Path(scratch), reporter)
    return (
        reporter.metric_rows[(1, "images_per_second")],
        reporter.metric_rows[(1, "test_accuracy")],
        reporter.lines,
    )


def mnist_spec(check: Check, model: str, **options: Any) -> TrainSpec:
    """A train spec on MNIST; options left out come from the model's recipe, as on the CLI."""
    given = {"model": model, "dataset": "mnist", "data_root": check.data_root, "device": check.device}
    return TrainSpec.model_validate(given | {"limit": check.limit} | options)


def stage_train(check: Check) -> None:
    device = torch.device(check.device)
    for model in ("lenet", "mnist-cnn"):
        spec = mnist_spec(check, model, epochs=1)
        bundle = load_dataset(data_request(spec), device)
        plain_epoch(spec, bundle, device, max_batches=50)
        _cnnq_epoch(spec.model_copy(update={"limit": 50 * spec.batch_size}))
        plain = max(plain_epoch(spec, bundle, device) for _ in range(2))
        rows = {"fp32": {}, "fp16": {"precision": "fp16"}, "bf16": {"precision": "bf16"}}
        rows["fp16+channels_last"] = {"precision": "fp16", "channels_last": True}
        for name, change in rows.items():
            if time.monotonic() > check.deadline:
                return
            rate, accuracy, lines = _cnnq_epoch(spec.model_copy(update=change))
            emit(
                check.out,
                {
                    "stage": "train",
                    "model": model,
                    "run": name,
                    "plain_img_s": round(plain),
                    "cnnq_img_s": round(rate),
                    "ratio": round(rate / plain, 3),
                    "test_accuracy": accuracy,
                    "log": [line for line in lines if "cuda" in line or "precision" in line][:3],
                },
            )


def stage_recipes(check: Check) -> None:
    runs = [(name, seed, model) for model in check.models for seed in check.seeds for name in check.recipes]
    for name, seed, model in runs:
        if time.monotonic() > check.deadline:
            return
        spec = mnist_spec(check, model, epochs=5, seed=seed, **RECIPES[name])
        reporter = RecordingReporter()
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as scratch:
            train_job(spec, Path(scratch), reporter)
        emit(
            check.out,
            {
                "stage": "recipes",
                "model": model,
                "recipe": name,
                "seed": seed,
                "test_accuracy": reporter.metric_rows[(5, "test_accuracy")],
                "val_accuracy": [reporter.metric_rows[(e, "val_accuracy")] for e in range(1, 6)],
                "seconds": round(time.monotonic() - started, 1),
            },
        )


def _cnnq(command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`cnnq COMMAND` (words split on spaces: the paths here have none)."""
    return subprocess.run(
        [sys.executable, "-m", "cnnq", *command.split()],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if result.returncode != 0:
        raise RuntimeError(f"exit {result.returncode}: {result.stderr[-2000:]} {result.stdout[-2000:]}")
    return json.loads(result.stdout)


def _labels(text: str) -> dict[str, tuple[str, float]]:
    rows = csv.DictReader(io.StringIO(text))
    return {Path(r["input"]).name: (r["label"], float(r["score"] or "nan")) for r in rows}


def stage_stack(check: Check) -> None:
    from tests.sample_data import make_chest_xray

    scratch = Path(tempfile.mkdtemp(prefix="cnnq-gpu-"))
    stack = Stack(scratch)
    stack.start()
    os.environ["CNNQ_DATA_ROOT"] = str(check.data_root)
    worker_log = (check.out.parent / "worker.log").open("w")
    serve = ["--gpus", "all"] if check.device == "cuda" else ["--cpu"]
    limit = f"--limit {check.limit}" if check.limit else ""
    worker = subprocess.Popen(
        [sys.executable, "-m", "cnnq", "worker", *serve],
        cwd=REPO,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        job = _json_of(
            _cnnq(
                "submit train --model mnist-cnn --dataset mnist --epochs 1 --precision fp16"
                f" --channels-last {limit} --wait --json"
            )
        )
        logs = _cnnq(f"logs {job['id']}").stdout
        workers = _cnnq("workers --json").stdout
        emit(
            check.out,
            {
                "stage": "stack-train",
                "status": job["status"],
                "metrics": job["metrics"],
                "worker": job["worker"],
                "device": job["device"],
                "cuda_lines": [line for line in logs.splitlines() if "cuda" in line or "fp16" in line],
                "workers": workers[-1500:],
            },
        )

        chest = make_chest_xray(
            scratch / "xray", per_class={"train": (150, 300), "val": (4, 4), "test": (50, 50)}, size=160
        )
        xray = _json_of(
            _cnnq(
                f"submit train --model resnet18 --dataset xray --data-root {chest} --image-size 128"
                " --epochs 4 --batch-size 16 --precision bf16 --threshold youden --wait --json"
            )
        )
        emit(check.out, {"stage": "stack-xray-train", "status": xray["status"], "metrics": xray["metrics"]})

        jpegs = scratch / "jpegs"
        make_jpegs(jpegs, check.images, 512)
        started = time.monotonic()
        bulk = _json_of(
            _cnnq(
                f"submit infer --model-from {xray['id']} --input {jpegs} --shard-size 1000 --wait --json",
                timeout=600,
            )
        )
        bulk_seconds = time.monotonic() - started
        gpu_csv = _cnnq(f"results {bulk['id']} --format csv").stdout
        bulk_logs = _cnnq(f"logs {bulk['id']}").stdout + _cnnq(f"logs {bulk['id']}.0001").stdout
        subset = scratch / "subset.txt"
        names = sorted(str(p) for p in jpegs.rglob("*.jpeg"))[:400]
        subset.write_text("\n".join(names) + "\n")
        cpu_run = _json_of(
            _cnnq(
                f"run infer --model-from {xray['id']} --input {subset} --device cpu --engine eager"
                f" --output {scratch / 'cpu.csv'} --json",
                timeout=600,
            )
        )
        gpu, cpu = _labels(gpu_csv), _labels((scratch / "cpu.csv").read_text())
        shared = sorted(set(gpu) & set(cpu))
        agree = sum(gpu[name][0] == cpu[name][0] for name in shared)
        emit(
            check.out,
            {
                "stage": "stack-bulk",
                "status": bulk["status"],
                "rows": len(gpu),
                "seconds_submit_to_end": round(bulk_seconds, 1),
                "images_per_second": round(len(gpu) / bulk_seconds, 1),
                "metrics": bulk["metrics"],
                "engine_lines": [line for line in bulk_logs.splitlines() if "engine" in line],
                "cpu_status": cpu_run["status"],
                "labels_compared": len(shared),
                "labels_agree": agree,
                "max_probability_difference": max((abs(gpu[n][1] - cpu[n][1]) for n in shared), default=None),
            },
        )
    finally:
        os.killpg(worker.pid, 15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, 9)
        stack.stop()
        shutil.rmtree(scratch, ignore_errors=True)


STAGES: dict[str, Callable[[Check], None]] = {
    "env": stage_env,
    "train": stage_train,
    "recipes": stage_recipes,
    "stack": stage_stack,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, required=True, help="Holds MNIST/raw.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--budget", type=float, default=300, help="Seconds per stage at most.")
    parser.add_argument("--device", default="cuda", help="cpu: a quick rehearsal of the script itself.")
    parser.add_argument("--limit", type=int, default=None, help="MNIST training images (default: all).")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs for the bulk job.")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="Which of RECIPES to run.")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--models", default="mnist-cnn,lenet", help="Models for the recipes stage.")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: this machine has no CUDA GPU")
    base = Check(
        args.data_root.resolve(),
        args.out,
        args.device,
        args.limit,
        args.images,
        tuple(args.recipes.split(",")),
        tuple(int(seed) for seed in args.seeds.split(",")),
        tuple(args.models.split(",")),
    )
    for name in args.stages.split(","):
        started = time.monotonic()
        try:
            STAGES[name](replace(base, deadline=started + args.budget))
        except Exception as error:
            emit(args.out, {"stage": name, "error": repr(error), "trace": traceback.format_exc()[-3000:]})
        emit(args.out, {"stage": name, "seconds": round(time.monotonic() - started, 1)})


if __name__ == "__main__":
    main()

"""Training throughput: cnnq's train job against a plain PyTorch loop, one MNIST epoch each.

Both run in this process with the same torch threads and allocator settings (`configure_cpu`), the
same model (same seed), batch size, optimizer, schedule, precision and the very same batches (the
dataset's tensors on the same device): it measures what cnnq's job adds around the same step;
each side gets a warm-up first. Then `--repeats` pairs run back to back, the side that goes first
alternating; the ratio shown is the median of the pairs' ratios, so drift in the machine's speed
(a shared VM's neighbours, clocks) hits both sides of a pair alike. The plain loop is the loop
of the PyTorch MNIST example, stripped to forward, loss, backward, step, scheduler. cnnq's figure is
its own `images_per_second` metric (the same span: first batch to last step of the epoch), and
its wall time for the whole job (load, validation, checkpoints, test) is shown too.

    .venv/bin/python benchmarks/train_throughput.py            # full epoch, lenet and mnist-cnn
    .venv/bin/python benchmarks/train_throughput.py --limit 5000 --repeats 1   # a quick look
    .venv/bin/python benchmarks/train_throughput.py --precision bf16   # both sides in bf16 autocast
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from cnnq.data.registry import DatasetBundle, load_dataset
from cnnq.jobs.device import autocast, configure_cpu, pick_device, plan_precision
from cnnq.jobs.reporter import RecordingReporter
from cnnq.jobs.spec import TrainSpec
from cnnq.jobs.train import data_request, make_optimizer, make_scheduler, seed_everything, train_job
from cnnq.models.registry import build_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = (REPO.parent / "shared" / "datasets").resolve()
WARMUP_BATCHES = 30


def plain_epoch(
    spec: TrainSpec, bundle: DatasetBundle, device: torch.device, max_batches: int | None = None
) -> float:
    """Images per second of one plain PyTorch training epoch."""
    seed_everything(spec.seed)
    model = build_model(
        spec.model,
        in_channels=bundle.in_channels,
        image_size=bundle.image_size,
        num_classes=len(bundle.classes),
    ).to(device)
    optimizer = make_optimizer(spec, model)
    scheduler = make_scheduler(spec, optimizer, steps_per_epoch=len(bundle.train))
    criterion = nn.CrossEntropyLoss()
    plan = plan_precision(spec.precision, device)
    if plan.scaled:
        raise SystemExit("train_throughput: fp16 with a GradScaler is for CUDA; use --precision bf16")
    model.train()
    seen = 0
    started = time.perf_counter()
    for index, (images, labels) in enumerate(bundle.train.batches(1)):
        if max_batches is not None and index >= max_batches:
            break
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, plan):
            loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        scheduler.step()
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def cnnq_epoch(spec: TrainSpec, workdir: Path) -> tuple[float, float]:
    """(images per second of the training epoch, wall seconds of the whole job)."""
    reporter = RecordingReporter()
    started = time.perf_counter()
    train_job(spec, workdir, reporter)
    return reporter.metric_rows[(1, "images_per_second")], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["lenet", "mnist-cnn"])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--batch-size", type=int, default=TrainSpec.model_fields["batch_size"].default)
    parser.add_argument("--limit", type=int, default=None, help="Training images (default: all 60000).")
    parser.add_argument("--repeats", type=int, default=5, help="Pairs of runs; medians count.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="fp32 or bf16 (autocast on both sides).")
    args = parser.parse_args()

    threads = configure_cpu()
    device = pick_device(args.device)
    table = Table(
        title=f"MNIST training throughput, 1 epoch, {device}, {args.precision}, {threads} torch threads, "
        f"medians of {args.repeats} pairs"
    )
    for column in (
        "model",
        "batch",
        "images",
        "plain img/s",
        "cnnq img/s",
        "cnnq / plain (range)",
        "cnnq job wall s",
    ):
        table.add_column(column, justify="right")
    for name in args.models:
        spec = TrainSpec(
            model=name,
            dataset="mnist",
            data_root=args.data_root,
            epochs=1,
            batch_size=args.batch_size,
            limit=args.limit,
            device=args.device,
            precision=args.precision,
            num_workers=0,
        )
        bundle = load_dataset(data_request(spec), device)
        plain_epoch(spec, bundle, device, max_batches=WARMUP_BATCHES)
        with tempfile.TemporaryDirectory() as scratch:
            cnnq_epoch(spec.model_copy(update={"limit": WARMUP_BATCHES * args.batch_size}), Path(scratch))
        plains, ours, walls = [], [], []
        for repeat in range(args.repeats):
            if repeat % 2 == 0:
                plains.append(plain_epoch(spec, bundle, device))
            with tempfile.TemporaryDirectory() as scratch:
                rate, seconds = cnnq_epoch(spec, Path(scratch))
            ours.append(rate)
            walls.append(seconds)
            if repeat % 2 == 1:
                plains.append(plain_epoch(spec, bundle, device))
        ratios = [mine / theirs for mine, theirs in zip(ours, plains, strict=True)]
        table.add_row(
            name,
            str(args.batch_size),
            str(bundle.train.num_samples),
            f"{median(plains):,.0f}",
            f"{median(ours):,.0f}",
            f"{median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f})",
            f"{median(walls):.1f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

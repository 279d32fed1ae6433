"""Test accuracy of the default recipe on the real MNIST: `lenet` and `mnist-cnn`, 5 epochs each.

Exactly what `cnnq run train --model NAME --dataset mnist --epochs 5` does (train_job with each
model's default recipe, `cnnq models`; nothing tuned per run), with a table of test accuracy
against the targets.

    nice -n 10 .venv/bin/python benchmarks/mnist_accuracy.py
    .venv/bin/python benchmarks/mnist_accuracy.py --precision bf16   # the same in bf16 autocast
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cnnq.jobs.device import configure_cpu
from cnnq.jobs.reporter import RecordingReporter
from cnnq.jobs.spec import TrainSpec
from cnnq.jobs.train import train_job

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = (REPO.parent / "shared" / "datasets").resolve()
TARGETS = {"lenet": 0.990, "mnist-cnn": 0.992}


@dataclass
class EpochPrinter(RecordingReporter):
    """Records like RecordingReporter and prints each epoch's metrics as they come (long runs)."""

    console: Console | None = None
    name: str = ""

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        super().metrics(step, values)
        if self.console is not None:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            self.console.print(f"{self.name} epoch {step}: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(TARGETS))
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="bf16 autocast where the CPU has AMX or AVX-512 BF16 (else the job falls back to fp32).",
    )
    args = parser.parse_args()

    threads = configure_cpu()
    console = Console(width=120)
    table = Table(
        title=f"MNIST test accuracy, default recipe, {args.epochs} epochs, {args.precision}, "
        f"{threads} torch threads"
    )
    for column in ("model", "test accuracy", "target", "met", "best val", "best epoch", "img/s", "minutes"):
        table.add_column(column, justify="right")
    for name in args.models:
        spec = TrainSpec(
            model=name,
            dataset="mnist",
            data_root=args.data_root,
            epochs=args.epochs,
            precision=args.precision,
        )
        reporter = EpochPrinter(console=console, name=name)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as workdir:
            train_job(spec, Path(workdir), reporter)
            summary = reporter.summary
        minutes = (time.perf_counter() - started) / 60
        rates = [row["images_per_second"] for row in reporter.history()]
        target = TARGETS.get(name)
        table.add_row(
            name,
            f"{summary['test_accuracy']:.4f}",
            "-" if target is None else f"{target:.3f}",
            "-" if target is None else ("yes" if summary["test_accuracy"] >= target else "NO"),
            f"{summary['best_val_accuracy']:.4f}",
            str(summary["best_epoch"]),
            f"{sum(rates) / len(rates):,.0f}",
            f"{minutes:.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()

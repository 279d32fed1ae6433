"""Custom image folders: cnnq's defaults against the plain ImageFolder loop, in one run.

Two folders are written from the real MNIST (`../shared/datasets/MNIST/raw`) once and reused:

- `mnist-png`: 6,000 training and 1,000 test digits as 28x28 grayscale PNGs in `train/<digit>/` and
  `test/<digit>/`;
- `rgb64`: 3,000 and 500 digits (`--rgb-images`) as 64x64 RGB PNGs, each in a random dark ink on a
  random light paper colour.

On each, for augmentation off and `rotation=10,shift=0.1`:

- plain: the loop a user writes by hand for that folder (knowing it is grayscale 28 px, or RGB
  64 px): torchvision's `ImageFolder` with `ToTensor` and `Normalize(0.5, 0.5)` (and
  `RandomAffine(degrees=10, translate=(0.1, 0.1))` per image when augmenting), a DataLoader with 2
  persistent workers, batch 64, shuffled, mnist-cnn as PyTorch's MNIST example writes it, Adam at
  lr 1e-3 (torch's default implementation), the last epoch's model tested;
- cnnq: `cnnq run train --model mnist-cnn --dataset folder --data-root DIR --epochs N` with nothing
  else given (plus `--augment rotation=10,shift=0.1`): its defaults choose the size, the channels,
  the recipe (Adam, OneCycle, lr 3e-3), memory or streaming, and 10% of train for validation; the
  best epoch's model is tested.

img/s: training images over the seconds of the training passes (cnnq: its `images_per_second`
metric per epoch; plain: the same span, first batch to last step); the ratio is the median of the
pairs' ratios. Accuracy is the mean over the pairs' seeds: 3 epochs on 6,000 images vary by a point
from seed to seed. "job s" is the whole run:
cnnq's indexing, sampling, decoding into memory, validation, checkpoints and test; plain's
training and test. Each run is a fresh Python process with the torch threads a cnnq job takes (so
neither side inherits the other's process settings: cnnq's allocator thresholds, `cnnq.jobs.allocator`,
are its own); the side that runs first alternates with each pair.

    nice -n 5 .venv/bin/python benchmarks/folder_throughput.py --epochs 3
    .venv/bin/python benchmarks/folder_throughput.py --folders mnist-png --streamed   # add cnnq streamed rows
    .venv/bin/python benchmarks/folder_throughput.py --holdout   # plain trains on cnnq's 90% too
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from cnnq.data.splits import stratified_split
from cnnq.data.tensor_sets import read_mnist
from cnnq.jobs.device import job_threads
from cnnq.jobs.reporter import RecordingReporter
from cnnq.jobs.spec import TrainSpec
from cnnq.jobs.train import train_job
from cnnq.settings import reload_settings

REPO = Path(__file__).resolve().parents[1]
MNIST_ROOT = (REPO.parent / "shared" / "datasets").resolve()
AUGMENT = "rotation=10,shift=0.1"
BATCH = 64
WORKERS = 2


@dataclass(frozen=True)
class FolderSpec:
    name: str
    train: int
    test: int
    channels: int
    size: int


FOLDERS = {
    "mnist-png": FolderSpec("mnist-png", 6000, 1000, channels=1, size=28),
    "rgb64": FolderSpec("rgb64", 3000, 500, channels=3, size=64),
}


@dataclass
class Outcome:
    images_per_second: float
    test_accuracy: float
    job_seconds: float
    input: str
    held: str = "-"


# ----------------------------------------------------------------------------------------- the folders


def _as_rgb64(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 28 px digit as 64 px RGB: dark ink of a random colour on light paper of another, a little noise."""
    ink, paper = rng.integers(0, 90, 3), rng.integers(170, 256, 3)
    alpha = np.asarray(Image.fromarray(digit).resize((64, 64), Image.Resampling.BILINEAR), np.float32) / 255
    pixels = paper * (1 - alpha[..., None]) + ink * alpha[..., None] + rng.normal(0, 8, (64, 64, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_folder(spec: FolderSpec, where: Path) -> Path:
    """The folder (written once: a `complete` marker says it is whole)."""
    root = where / f"{spec.name}-{spec.train}-{spec.test}"
    if (root / "complete").exists():
        return root
    rng = np.random.default_rng(0)
    for split, train, count in (("train", True, spec.train), ("test", False, spec.test)):
        images, labels, _ = read_mnist(MNIST_ROOT, train)
        for index in range(count):
            digit, label = images[index, 0].numpy(), int(labels[index])
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(digit, "L") if spec.channels == 1 else _as_rgb64(digit, rng)
            image.save(folder / f"{index:05d}.png")
    (root / "complete").touch()
    return root


# ------------------------------------------------------------------------------------------- the runs


def textbook_mnist_cnn(channels: int, size: int) -> nn.Module:
    """mnist-cnn as PyTorch's examples/mnist writes it (ReLU, then max-pool): the same function and
    weights as cnnq's `mnist-cnn`, which pools first (`cnnq.models.classic`)."""
    side = (size - 4) // 2
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout2d(0.25),
        nn.Flatten(),
        nn.Linear(64 * side * side, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def in_fresh_process(run: Callable[..., Outcome], **options: object) -> Outcome:
    """One run in a new Python process, so that neither side inherits what the other set for its
    process: cnnq's job raises glibc's malloc thresholds (`cnnq.jobs.allocator`), which a plain loop
    run after it in the same process would otherwise get too."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(run, **options).result()


def plain_run(
    spec: FolderSpec, root: Path, *, epochs: int, augment: bool, seed: int = 0, holdout: bool = False
) -> Outcome:
    """The hand-written loop; `holdout`: trained on the 90% of train/ that cnnq trains on (the same
    seeded, stratified carve), to tell the cost of cnnq's validation set from that of its recipe."""
    started = time.perf_counter()
    torch.set_num_threads(job_threads())
    torch.manual_seed(seed)
    steps: list[object] = [transforms.Grayscale(1)] if spec.channels == 1 else []
    if augment:
        steps.append(transforms.RandomAffine(degrees=10, translate=(0.1, 0.1)))
    steps += [transforms.ToTensor(), transforms.Normalize((0.5,) * spec.channels, (0.5,) * spec.channels)]
    test_steps = [s for s in steps if not isinstance(s, transforms.RandomAffine)]
    train_set = datasets.ImageFolder(str(root / "train"), transform=transforms.Compose(steps))
    test_set = datasets.ImageFolder(str(root / "test"), transform=transforms.Compose(test_steps))
    trained_on: Dataset = train_set
    if holdout:
        kept, _ = stratified_split(train_set.targets, TrainSpec.model_fields["val_split"].default, seed)
        trained_on = Subset(train_set, kept.tolist())
    train_loader = DataLoader(
        trained_on, batch_size=BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=True
    )
    model = textbook_mnist_cnn(spec.channels, spec.size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    seen, training = 0, 0.0
    for _ in range(epochs):
        model.train()
        begun = time.perf_counter()
        for images, labels in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            seen += len(labels)
        training += time.perf_counter() - begun
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in DataLoader(test_set, batch_size=256, num_workers=WORKERS):
            correct += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    del train_loader
    size = f"{spec.channels}x{spec.size}x{spec.size}"
    return Outcome(seen / training, correct / total, time.perf_counter() - started, size)


def cnnq_run(root: Path, *, epochs: int, augment: bool, streamed: bool = False, seed: int = 0) -> Outcome:
    options: dict[str, object] = {"model": "mnist-cnn", "dataset": "folder", "data_root": root}
    options |= {"epochs": epochs, "device": "cpu", "seed": seed}
    if augment:
        options["augment"] = AUGMENT
    spec = TrainSpec.model_validate(options)
    before = os.environ.get("CNNQ_CACHE_MEMORY")
    if streamed:
        os.environ["CNNQ_CACHE_MEMORY"] = "0"
        reload_settings()
    reporter = RecordingReporter()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            train_job(spec, Path(workdir), reporter)
            summary = reporter.summary
    finally:
        if streamed:
            os.environ.pop("CNNQ_CACHE_MEMORY")
            if before is not None:
                os.environ["CNNQ_CACHE_MEMORY"] = before
            reload_settings()
    seconds = time.perf_counter() - started
    rates = [reporter.metric_rows[(epoch, "images_per_second")] for epoch in range(1, epochs + 1)]
    harmonic = len(rates) / sum(1 / rate for rate in rates)  # equal epochs: images over seconds
    data = summary["data"]
    return Outcome(harmonic, summary["test_accuracy"], seconds, data["input"], data["held"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="Pairs per row, seeds 0, 1, ...: speed ratios' median, mean accuracy.",
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cnnq-folder-bench")
    parser.add_argument("--streamed", action="store_true", help="Also run cnnq with CNNQ_CACHE_MEMORY=0.")
    parser.add_argument(
        "--holdout", action="store_true", help="The plain loop trains on the 90%% of train/ cnnq trains on."
    )
    parser.add_argument(
        "--rgb-images", type=int, nargs=2, metavar=("TRAIN", "TEST"), help="rgb64's size (default 3000 500)."
    )
    args = parser.parse_args()
    if args.rgb_images:
        FOLDERS["rgb64"] = replace(FOLDERS["rgb64"], train=args.rgb_images[0], test=args.rgb_images[1])

    threads = job_threads()
    console = Console(width=150)
    load_before = os.getloadavg()
    table = Table(
        title=f"Custom folders, mnist-cnn, {args.epochs} epochs, batch {BATCH}, {WORKERS} DataLoader "
        f"workers, {threads} torch threads, {args.repeats} pair(s) per row"
        + (", plain on cnnq's 90% of train/" if args.holdout else "")
    )
    for column in (
        "folder",
        "augment",
        "plain img/s",
        "cnnq img/s",
        "cnnq / plain",
        "plain acc",
        "cnnq acc",
        "cnnq - plain",
        "plain job s",
        "cnnq job s",
        "cnnq input, held",
    ):
        table.add_column(column, justify="right")
    for name in args.folders:
        spec = FOLDERS[name]
        root = write_folder(spec, args.workdir)
        for augment in (False, True):
            for streamed in (False, True) if args.streamed else (False,):
                row = run_pairs(spec, root, args, augment=augment, streamed=streamed, console=console)
                ratio, low, high = row.ratio()
                plain_acc, our_acc = (
                    Row.mean(row.plains, "test_accuracy"),
                    Row.mean(row.ours, "test_accuracy"),
                )
                table.add_row(
                    f"{name} (cnnq streamed)" if streamed else name,
                    AUGMENT if augment else "none",
                    f"{median(o.images_per_second for o in row.plains):,.0f}",
                    f"{median(o.images_per_second for o in row.ours):,.0f}",
                    f"{ratio:.2f}x" + (f" ({low:.2f}-{high:.2f})" if len(row.ours) > 1 else ""),
                    f"{plain_acc:.2%}",
                    f"{our_acc:.2%}",
                    f"{100 * (our_acc - plain_acc):+.2f} pt",
                    f"{Row.mean(row.plains, 'job_seconds'):.1f}",
                    f"{Row.mean(row.ours, 'job_seconds'):.1f}",
                    f"{row.ours[0].input}, {row.ours[0].held}",
                )
    console.print(table)
    load_after = os.getloadavg()
    console.print(
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, on "
        f"{os.cpu_count()} cores. Goals: defaults >= 1.00x plain img/s and accuracy >= plain - 0.5 pt; "
        "augmented >= 1.50x plain img/s.",
        highlight=False,
    )


@dataclass
class Row:
    """A row of the table: `args.repeats` pairs, seed = the pair's number on both sides."""

    plains: list[Outcome]
    ours: list[Outcome]

    def ratio(self) -> tuple[float, float, float]:
        """(median, lowest, highest) of the pairs' img/s ratios."""
        pairs = zip(self.plains, self.ours, strict=True)
        ratios = sorted(ours.images_per_second / plain.images_per_second for plain, ours in pairs)
        return median(ratios), ratios[0], ratios[-1]

    @staticmethod
    def mean(outcomes: list[Outcome], field: str) -> float:
        return sum(getattr(outcome, field) for outcome in outcomes) / len(outcomes)


def run_pairs(
    spec: FolderSpec, root: Path, args: argparse.Namespace, *, augment: bool, streamed: bool, console: Console
) -> Row:
    """`args.repeats` pairs (seed = the pair's number), the side going first alternating."""
    row = Row([], [])
    for seed in range(args.repeats):
        for side in ("plain", "cnnq") if seed % 2 == 0 else ("cnnq", "plain"):
            if side == "plain":
                outcome = in_fresh_process(
                    plain_run,
                    spec=spec,
                    root=root,
                    epochs=args.epochs,
                    augment=augment,
                    seed=seed,
                    holdout=args.holdout,
                )
                row.plains.append(outcome)
            else:
                outcome = in_fresh_process(
                    cnnq_run, root=root, epochs=args.epochs, augment=augment, streamed=streamed, seed=seed
                )
                row.ours.append(outcome)
            console.print(
                f"{spec.name} augment={augment} streamed={streamed} seed {seed} {side}: {outcome}, "
                f"load {os.getloadavg()[0]:.1f}",
                highlight=False,
            )
    return row


if __name__ == "__main__":
    main()

"""channels_last against PyTorch's default layout: training steps of each classic net on the CPU.

`cnnq submit train` trains in channels_last on a CPU unless told `--no-channels-last`; this is the
measure behind that default. For each model, the same seeded net, optimizer and batch of random
images take `--steps` training steps (forward, loss, backward, Adam step) in each layout, after two
warm-up steps, the layouts alternating for `--repeats` rounds; the figure is images per CPU second
(user + system of this process, which a shared machine's load disturbs less than wall time), with
`--threads` torch threads (1: a job per core, as `cnnq worker --concurrency` on a busy host runs them).

    .venv/bin/python benchmarks/channels_last.py
    .venv/bin/python benchmarks/channels_last.py --threads 2 --models mnist-cnn:64:3
"""

from __future__ import annotations

import argparse
import time
from statistics import median

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from cnnq.models.registry import build_model

MODELS = ["lenet:28:1", "mnist-cnn:28:1", "cifar-cnn:32:3", "mnist-cnn:64:3", "resnet18:64:3"]
BATCH = 64


def images_per_cpu_second(name: str, size: int, channels: int, *, channels_last: bool, steps: int) -> float:
    torch.manual_seed(0)
    images, labels = torch.randn(BATCH, channels, size, size), torch.randint(0, 10, (BATCH,))
    model = build_model(name, in_channels=channels, image_size=size, num_classes=10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer, criterion = torch.optim.Adam(model.parameters(), 1e-3), nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), labels).backward()
        optimizer.step()

    for _ in range(2):
        step()
    started = time.process_time()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=MODELS, help="NAME:SIZE:CHANNELS each.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="About this much CPU time per measure.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = Table(
        title=f"Training steps, batch {BATCH}, {args.threads} torch thread(s), median of {args.repeats}"
    )
    columns = ("model", "input", "default img/CPU s", "channels_last img/CPU s", "channels_last / default")
    for column in columns:
        table.add_column(column, justify="right")
    for entry in args.models:
        name, size, channels = entry.split(":")
        shape = (name, int(size), int(channels))
        probe = images_per_cpu_second(*shape, channels_last=False, steps=2)
        steps = max(3, round(args.seconds * probe / BATCH))
        rates: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(args.repeats):
            for layout in (False, True) if round_ % 2 == 0 else (True, False):
                rates[layout].append(images_per_cpu_second(*shape, channels_last=layout, steps=steps))
        ratios = sorted(last / plain for plain, last in zip(rates[False], rates[True], strict=True))
        table.add_row(
            name,
            f"{channels}x{size}x{size}",
            f"{median(rates[False]):,.0f}",
            f"{median(rates[True]):,.0f}",
            f"{median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

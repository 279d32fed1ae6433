"""cnnq's CPU training step against the step a tutorial writes, one default at a time.

For each classic net, the same seeded weights and batch of random images take `--steps` training
steps (forward, loss, backward, Adam step), after warm-up steps, in five set-ups, each adding one of
cnnq's CPU defaults to the one before:

- tutorial: the net as its tutorial writes it (ReLU, then max-pool), PyTorch's default layout,
  `torch.optim.Adam` as constructed by default, and glibc's malloc as every Python process has it;
- + kept memory: glibc told to keep what a step frees for the next step (`cnnq.jobs.allocator`:
  without it each large activation is mapped and faulted in afresh on every step);
- + fused Adam: `torch.optim.Adam(fused=True)`, one pass over each parameter per step
  (`cnnq.jobs.train.make_optimizer`);
- + pool before ReLU: the net as `cnnq.models.registry.build_model` builds it, the same function and
  gradients (`cnnq.models.classic`); for nets with no ReLU before a pool it is the previous set-up;
- + channels_last: the model and the batch in channels_last.

cnnq's default is the last set-up for inputs up to 32 px and the one before it above that
(`cnnq.jobs.device.trains_channels_last`); the table marks it. The allocator's thresholds hold for a
whole process, so each round measures the tutorial in one fresh process and the other set-ups (in
rotating order) in another. The figure is images per CPU second (user + system of the measuring
process, which a shared machine's load disturbs less than wall time), with `--threads` torch threads
(1: a job per core, as `cnnq worker --concurrency` on a busy host runs them); ratios are the median
over `--repeats` rounds of each set-up against the tutorial's.

    .venv/bin/python benchmarks/cpu_training_step.py
    .venv/bin/python benchmarks/cpu_training_step.py --threads 2 --models mnist-cnn:64:3
    .venv/bin/python benchmarks/cpu_training_step.py --threads 2 --layouts --models mnist-cnn:64:3
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from statistics import median
from typing import TypeVar

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from cnnq.jobs.allocator import keep_freed_memory
from cnnq.jobs.device import trains_channels_last
from cnnq.models.registry import build_model

MODELS = ["lenet:28:1", "mnist-cnn:28:1", "cifar-cnn:32:3", "mnist-cnn:64:3", "resnet18:64:3"]
BATCH = 64
T = TypeVar("T")
SETUPS = ("tutorial", "+ kept memory", "+ fused Adam", "+ pool before ReLU", "+ channels_last")


def relu_before_pool(model: nn.Module) -> nn.Module:
    """The tutorial's order: every max-pool that cnnq runs before a ReLU moved after it."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        layers = list(features)
        for index, layer in enumerate(layers[:-1]):
            if isinstance(layer, nn.MaxPool2d) and isinstance(layers[index + 1], nn.ReLU):
                layers[index], layers[index + 1] = layers[index + 1], layer
        model.features = nn.Sequential(*layers)
    return model


def images_per_cpu_second(name: str, size: int, channels: int, *, setup: str, steps: int) -> float:
    level = SETUPS.index(setup)
    torch.manual_seed(0)
    images, labels = torch.randn(BATCH, channels, size, size), torch.randint(0, 10, (BATCH,))
    model = build_model(name, in_channels=channels, image_size=size, num_classes=10)
    if level < SETUPS.index("+ pool before ReLU"):
        model = relu_before_pool(model)
    if level >= SETUPS.index("+ channels_last"):
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    fused = level >= SETUPS.index("+ fused Adam")
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, fused=fused or None)
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), labels).backward()
        optimizer.step()

    for _ in range(4):  # the allocator's heap settles into the step's blocks in a few steps
        step()
    started = time.process_time()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.process_time() - started)


def in_fresh_process(run: Callable[..., T], *args: object) -> T:
    """`run(*args)` in a new Python process: the allocator's thresholds hold for a whole process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run, *args).result()


def shape_and_steps(entry: str, seconds: float) -> tuple[tuple[str, int, int], int]:
    """NAME:SIZE:CHANNELS, and the steps that take about `seconds` of CPU time in the tutorial set-up."""
    name, size, channels = entry.split(":")
    shape = (name, int(size), int(channels))
    probe = images_per_cpu_second(*shape, setup="tutorial", steps=2)
    return shape, max(3, round(seconds * probe / BATCH))


def measure(shape: tuple[str, int, int], setups: list[str], steps: int, threads: int) -> dict[str, float]:
    """In a fresh process: the set-ups' rates, the kept-memory allocator on unless it is the tutorial."""
    if setups != ["tutorial"]:
        keep_freed_memory()
    torch.set_num_threads(threads)
    return {setup: images_per_cpu_second(*shape, setup=setup, steps=steps) for setup in setups}


def layouts(
    shape: tuple[str, int, int], steps: int, threads: int, repeats: int
) -> tuple[float, float, list[float]]:
    """In a fresh process with cnnq's step (kept memory, fused Adam, its net): the default layout's and
    channels_last's rates, alternating, and their per-round ratios (channels_last / default)."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    rates: dict[str, list[float]] = {"+ pool before ReLU": [], "+ channels_last": []}
    for round_ in range(repeats):
        order = list(rates) if round_ % 2 == 0 else list(rates)[::-1]
        for setup in order:
            rates[setup].append(images_per_cpu_second(*shape, setup=setup, steps=steps))
    default, channels_last = rates.values()
    ratios = sorted(ours / base for base, ours in zip(default, channels_last, strict=True))
    return median(default), median(channels_last), ratios


def layout_table(args: argparse.Namespace) -> Table:
    table = Table(
        title=f"cnnq's CPU step in both layouts, batch {BATCH}, {args.threads} torch thread(s), "
        f"{args.repeats} alternating rounds in one process"
    )
    for column in ("model", "input", "default layout img/CPU s", "channels_last img/CPU s", "ratio (range)"):
        table.add_column(column, justify="right")
    for entry in args.models:
        (name, size, channels), steps = shape_and_steps(entry, args.seconds)
        default, channels_last, ratios = in_fresh_process(
            layouts, (name, size, channels), steps, args.threads, args.repeats
        )
        table.add_row(
            name,
            f"{channels}x{size}x{size}",
            f"{default:,.0f}",
            f"{channels_last:,.0f}",
            f"{median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=MODELS, help="NAME:SIZE:CHANNELS each.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="About this much CPU time per measure.")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="Only the two layouts under cnnq's other defaults (what its channels_last rule rests on).",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.layouts:
        Console(width=150).print(layout_table(args))
        return
    table = Table(
        title=f"Training steps, batch {BATCH}, {args.threads} torch thread(s), median of {args.repeats} "
        "rounds; each set-up adds one default to the one before; ratios against the tutorial's step; "
        "* cnnq's default for the input"
    )
    table.add_column("model", justify="right")
    table.add_column("input", justify="right")
    table.add_column("tutorial img/CPU s", justify="right")
    for setup in SETUPS[1:]:
        table.add_column(setup, justify="right")
    cpu = torch.device("cpu")
    for entry in args.models:
        shape, steps = shape_and_steps(entry, args.seconds)
        name, size, channels = shape
        rates: dict[str, list[float]] = {setup: [] for setup in SETUPS}
        for round_ in range(args.repeats):
            shift = round_ % (len(SETUPS) - 1)
            others = list(SETUPS[1 + shift :] + SETUPS[1 : 1 + shift])
            groups = [["tutorial"], others] if round_ % 2 == 0 else [others, ["tutorial"]]
            for group in groups:
                for setup, rate in in_fresh_process(measure, shape, group, steps, args.threads).items():
                    rates[setup].append(rate)
        default = "+ channels_last" if trains_channels_last(None, cpu, size) else "+ pool before ReLU"
        cells = [name, f"{channels}x{size}x{size}", f"{median(rates['tutorial']):,.0f}"]
        for setup in SETUPS[1:]:
            ratios = sorted(ours / base for base, ours in zip(rates["tutorial"], rates[setup], strict=True))
            mark = "*" if setup == default else ""
            cells.append(f"{mark}{median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")
        table.add_row(*cells)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

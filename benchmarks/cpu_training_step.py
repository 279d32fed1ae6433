"""cnnq's CPU training step against the step a tutorial writes, one default at a time.

For each classic net, the same seeded weights and batch of random images take `--steps` training
steps (forward, loss, backward, Adam step), after two warm-up steps, in four set-ups, each adding one
of cnnq's CPU defaults to the one before:

- tutorial: the net as its tutorial writes it (ReLU, then max-pool), PyTorch's default layout and
  `torch.optim.Adam` as constructed by default;
- + channels_last: the model and the batch in channels_last (`--channels-last`, the CPU default);
- + fused Adam: `torch.optim.Adam(fused=True)`, one pass over each parameter per step
  (`cnnq.jobs.train.make_optimizer`);
- cnnq: + the net as `cnnq.models.registry.build_model` builds it: max-pool before ReLU, the same
  function and gradients (`cnnq.models.classic`); for nets with no ReLU before a pool it is the
  previous set-up.

The set-ups take turns for `--repeats` rounds (the order rotating); the figure is images per CPU
second (user + system of this process, which a shared machine's load disturbs less than wall time),
with `--threads` torch threads (1: a job per core, as `cnnq worker --concurrency` on a busy host
runs them); ratios are the median over rounds of each set-up against the tutorial's.

    .venv/bin/python benchmarks/cpu_training_step.py
    .venv/bin/python benchmarks/cpu_training_step.py --threads 2 --models mnist-cnn:64:3
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
SETUPS = ("tutorial", "+ channels_last", "+ fused Adam", "cnnq")


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
    if level < SETUPS.index("cnnq"):
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
        title=f"Training steps, batch {BATCH}, {args.threads} torch thread(s), median of {args.repeats} "
        "rounds; each set-up adds one default to the one before; ratios against the tutorial's step"
    )
    table.add_column("model", justify="right")
    table.add_column("input", justify="right")
    table.add_column("tutorial img/CPU s", justify="right")
    for setup in SETUPS[1:]:
        table.add_column(setup, justify="right")
    for entry in args.models:
        name, size, channels = entry.split(":")
        shape = (name, int(size), int(channels))
        probe = images_per_cpu_second(*shape, setup="tutorial", steps=2)
        steps = max(3, round(args.seconds * probe / BATCH))
        rates: dict[str, list[float]] = {setup: [] for setup in SETUPS}
        for round_ in range(args.repeats):
            shift = round_ % len(SETUPS)
            for setup in SETUPS[shift:] + SETUPS[:shift]:
                rates[setup].append(images_per_cpu_second(*shape, setup=setup, steps=steps))
        cells = [name, f"{channels}x{size}x{size}", f"{median(rates['tutorial']):,.0f}"]
        for setup in SETUPS[1:]:
            ratios = sorted(ours / base for base, ours in zip(rates["tutorial"], rates[setup], strict=True))
            cells.append(f"{median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})")
        table.add_row(*cells)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

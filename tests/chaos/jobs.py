"""The small jobs the chaos tests submit, through the real `cnnq submit` command.

Training: LeNet on a slice of the real MNIST (seconds per epoch on one core). Bulk inference: a folder
of generated PNGs scored in small shards by an (untrained) simple CNN saved as a model file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def train_args(data_root: Path, *, limit: int = 2048, epochs: int = 3, batch_size: int = 64) -> list[str]:
    return [
        "train", "--model", "lenet", "--dataset", "mnist", "--data-root", str(data_root),
        "--limit", str(limit), "--epochs", str(epochs), "--batch-size", str(batch_size),
        "--num-workers", "0", "--device", "cpu",
    ]  # fmt: skip


def cnnq_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`cnnq ARGS` as its own process, with this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "cnnq", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def submit(cli, *args: str) -> str:  # type: ignore[no-untyped-def]
    """`cnnq submit ARGS --json` (through the CLI in this process: seconds cheaper than a new one);
    returns the job id."""
    result = cli("submit", *args, "--json")
    assert result.code == 0, f"cnnq submit {' '.join(args)} exited {result.code}: {result.stderr}"
    return json.loads(result.stdout)["id"]


@dataclass(frozen=True)
class BulkInputs:
    model_file: Path
    folder: Path
    inputs: list[str]

    def args(self, shard_size: int = 8) -> list[str]:
        return [
            "infer", "--model-from", str(self.model_file), "--input", str(self.folder),
            "--shard-size", str(shard_size), "--engine", "eager", "--num-workers", "0",
            "--batch-size", "8", "--device", "cpu",
        ]  # fmt: skip


def make_bulk_inputs(root: Path, count: int = 40, size: int = 32) -> BulkInputs:
    """`count` grayscale PNGs and a two-class simple CNN to score them."""
    from cnnq.jobs.checkpoint import ModelInfo, save_model_file
    from cnnq.models.registry import build_model

    folder = root / "archive"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for index in range(count):
        pixels = rng.integers(0, 255, size=(size, size), dtype=np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"scan_{index:03d}.png")
    model_file = root / "models" / "simple.pt"
    network = build_model("simple-cnn", in_channels=1, image_size=size, num_classes=2)
    save_model_file(
        model_file, network, ModelInfo("simple-cnn", 1, size, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,))
    )
    inputs = sorted(str(path) for path in folder.iterdir())
    return BulkInputs(model_file, folder, inputs)

"""Inference engines: the model as a function from a batch of images to class probabilities.

`eager` runs the PyTorch model in inference mode (channels_last, half precision on a GPU); `onnx`
runs its ONNX export with onnxruntime on the CPU. `auto` is onnx on a CPU and eager on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from cnnq.jobs.checkpoint import LoadedModel


class Engine(Protocol):
    name: str
    device: torch.device
    """Where the engine wants its input batches."""

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """(N, classes) float32 probabilities for a batch of N preprocessed images."""


class EagerEngine:
    name = "eager"

    def __init__(self, loaded: LoadedModel) -> None:
        self.device = loaded.device
        self.half = self.device.type == "cuda"
        self.model = loaded.model.to(self.device, memory_format=torch.channels_last).eval()
        if self.half:
            self.model.half()

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            batch = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            logits = self.model(batch.half() if self.half else batch)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def resolve_engine(requested: str, device: torch.device) -> str:
    if requested == "auto":
        return "onnx" if device.type == "cpu" else "eager"
    return requested


def make_engine(
    requested: str, loaded: LoadedModel, workdir: Path, threads: int, log: Callable[[str], None]
) -> Engine:
    """The engine to score with; `auto` falls back to eager (with a log line) if the export fails."""
    name = resolve_engine(requested, loaded.device)
    if name == "onnx":
        if loaded.device.type != "cpu":
            log(f"engine onnx runs on the CPU; the model stays off {loaded.device} for scoring")
        from cnnq.jobs.onnx_engine import onnx_engine

        try:
            return onnx_engine(loaded, workdir, threads)
        except Exception as error:
            if requested != "auto":
                raise
            log(f"ONNX export failed ({type(error).__name__}: {error}); scoring with the eager engine")
    return EagerEngine(loaded)

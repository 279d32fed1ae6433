"""Inference engines: the model as a function from a batch of images to class probabilities.

`eager` is PyTorch (fp16 on a GPU), `onnx` ONNX Runtime on the CPU (`cnnq.jobs.onnx_engine`),
`onnx-int8` its int8 model (`cnnq.jobs.int8_engine`); `auto` is eager on CUDA, else onnx-int8 where
the CPU has int8 dot products (VNNI, AMX), else onnx. `cnnq.jobs.infer` makes a job's engine.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from cnnq.jobs.checkpoint import LoadedModel
from cnnq.jobs.device import cpu_has_int8_dot


class Engine:
    """A model as a function from a batch of preprocessed images to class probabilities."""

    name: str
    device: torch.device
    """Where the engine wants its input batches."""

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """(N, classes) float32 probabilities for a batch of N preprocessed images."""
        raise NotImplementedError

    def report(self) -> dict[str, object]:
        """What the job summary should say about how the engine scored (empty for most engines)."""
        return {}


class EagerEngine(Engine):
    name = "eager"

    def __init__(self, loaded: LoadedModel) -> None:
        self.device = loaded.device
        self.half = self.device.type == "cuda"
        # A copy: the loaded model may be cached for later jobs (`cnnq.jobs.model_cache`), unconverted.
        model = copy.deepcopy(loaded.model)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        if self.half:
            self.model.half()

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            batch = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            logits = self.model(batch.half() if self.half else batch)
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


def resolve_engine(requested: str, device: torch.device) -> str:
    if requested == "auto":
        if device.type != "cpu":
            return "eager"
        return "onnx-int8" if cpu_has_int8_dot() else "onnx"
    return requested

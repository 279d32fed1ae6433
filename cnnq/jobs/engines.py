"""Inference engines: the model as a function from a batch of images to class probabilities.

`eager` runs the PyTorch model in inference mode (channels_last, half precision on a GPU); `onnx`
runs its ONNX export with onnxruntime on the CPU; `onnx-int8` runs a quantized export, every label
held to fp32's (`cnnq.jobs.int8_engine`). `auto` is eager on CUDA; on a CPU, onnx-int8 where the
CPU has int8 dot-product instructions, else onnx.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cnnq.jobs.checkpoint import LoadedModel
from cnnq.jobs.device import cpu_has_int8_dot

NearBoundary = Callable[[np.ndarray, float], np.ndarray]
"""(probabilities (N, classes), margin) -> (N,) bool: the rows whose label a change of up to `margin`
in any probability could flip."""


class Engine:
    """A model as a function from a batch of preprocessed images to class probabilities."""

    name: str
    device: torch.device
    """Where the engine wants its input batches."""
    sample_size = 0
    """Images, spread over the job's inputs, that the engine must see (through `prepare`) before it
    scores the rest; 0 for none."""
    wants_calibration = False
    """Whether the engine would like `calibrate` called before `sample_size` is read."""

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """(N, classes) float32 probabilities for a batch of N preprocessed images."""
        raise NotImplementedError

    def calibrate(self, images: torch.Tensor) -> None:
        """Images spread over a whole bulk job, for an engine to tune itself on (not to score)."""

    def prepare(self, sample: torch.Tensor) -> np.ndarray:
        """The sample's probabilities, scored while the engine sets itself up on it."""
        return self.probabilities(sample)

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


def make_engine(
    requested: str,
    loaded: LoadedModel,
    workdir: Path,
    threads: int,
    near_boundary: NearBoundary,
    log: Callable[[str], None],
    job_size: int,
) -> Engine:
    """The engine to score with; `auto` falls back to eager (with a log line) if the export fails.
    The int8 engine scores the rows `near_boundary` marks again in fp32."""
    name = resolve_engine(requested, loaded.device)
    if name in ("onnx", "onnx-int8"):
        if loaded.device.type != "cpu":
            log(f"engine {name} runs on the CPU; the model stays off {loaded.device} for scoring")
        from cnnq.jobs.onnx_engine import onnx_engine

        try:
            fp32 = onnx_engine(loaded, workdir, threads)
            if name == "onnx":
                return fp32
            from cnnq.jobs.int8_engine import Int8Engine

            return Int8Engine(fp32, threads, near_boundary, log, job_size)
        except Exception as error:
            if requested != "auto":
                raise
            log(f"ONNX export failed ({type(error).__name__}: {error}); scoring with the eager engine")
    return EagerEngine(loaded)

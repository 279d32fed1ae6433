"""The int8 engine: ONNX Runtime on a model's int8 file (`cnnq.jobs.onnx_engine.quantize`).

On a CPU with VNNI or AMX, int8 ResNet-18 runs 3.4x as fast as fp32 (README, Measured), its
probabilities at most `max_difference` off fp32's on the images the file was measured on. Each image
whose int8 probabilities lie within `margin` (`SAFETY` times that, at least `MIN_MARGIN`) of the
decision boundary is scored again in fp32, so only an image on which int8 strays `SAFETY` times
further than on any measured could change label. A job scores in fp32 with under `QUANTIZE_IMAGES`
inputs, with a measure over `MAX_ERROR`, and once over `MAX_RESCORED` of its images needed fp32.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from cnnq.jobs.engines import Engine
from cnnq.jobs.onnx_engine import QUANTIZE_IMAGES, OnnxEngine, as_input, int8_path_for, load_onnx, quantize

MAX_ERROR = 0.05
MAX_RESCORED = 0.3
SAFETY = 4.0
MIN_MARGIN = 0.02


class Int8Engine(Engine):
    name = "onnx-int8"
    device = torch.device("cpu")

    def __init__(
        self,
        fp32: OnnxEngine,
        threads: int,
        near_boundary: Callable[[np.ndarray, float], np.ndarray],
        log: Callable[[str], None],
        job_size: int,
        sample: Callable[[int], torch.Tensor],
    ) -> None:
        """`near_boundary(probabilities, margin)`: the rows a change of up to `margin` could flip;
        `sample(n)`: n of the job's inputs spread over it, to quantize a model that has no int8 file."""
        self.fp32, self.near_boundary, self.log = fp32, near_boundary, log
        self.int8: OnnxEngine | None = None
        self.max_difference: float | None = None
        self.margin: float | None = None
        self.gave_up = False
        self.counts: Counter[str] = Counter()
        if job_size < QUANTIZE_IMAGES:
            return log(f"int8: {job_size} inputs are too few to pay for int8; scoring in fp32")
        try:
            if not self._load(threads):
                images = as_input(sample(QUANTIZE_IMAGES))
                log(quantize(fp32, images[0::2], images[1::2], threads))
                self._load(threads)
            self.max_difference = worst = float(self.measure["max_difference"])
        except Exception as error:
            return self._give_up(f"quantization failed ({type(error).__name__}: {error})")
        seen = f"on {self.measure['checked']} images its probabilities differ from fp32's by"
        if worst > MAX_ERROR:
            return self._give_up(f"{seen} up to {worst:.3f}, over {MAX_ERROR}")
        self.margin = max(SAFETY * worst, MIN_MARGIN)
        log(f"int8: {seen} at most {worst:.4f}; images within {self.margin:.3f} of the boundary get fp32")

    def _load(self, threads: int) -> bool:  # the int8 file, if one measured against this fp32 export
        path = int8_path_for(self.fp32.path)
        try:
            int8 = load_onnx(path, threads)
        except FileNotFoundError:
            return False
        except Exception as error:  # a damaged file
            self.log(f"int8: cannot load {path.name} ({type(error).__name__}); quantizing again")
            return False
        measure = int8.session.get_modelmeta().custom_metadata_map
        if measure.get("fp32_sha256") != self.fp32.sha256:
            self.log(f"int8: {path.name} holds no measure against this fp32 export; quantizing again")
            return False
        self.int8, self.measure = int8, measure
        return True

    def _give_up(self, why: str) -> None:
        self.gave_up = True
        self.int8 = None
        self.log(f"int8: {why}; scoring in fp32")

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        batch = as_input(images)
        if self.int8 is None or self.margin is None:
            self.counts["fp32"] += len(batch)
            return self.fp32.run(batch)
        probabilities = self.int8.run(batch)
        near = self.near_boundary(probabilities, self.margin)
        if near.any():
            probabilities[near] = self.fp32.run(np.ascontiguousarray(batch[near]))
        self.counts["int8"] += len(batch) - int(near.sum())
        self.counts["rescored"] += int(near.sum())
        seen = self.counts["int8"] + self.counts["rescored"]
        if seen >= QUANTIZE_IMAGES and self.counts["rescored"] > MAX_RESCORED * seen:
            self._give_up(f"{self.counts['rescored'] / seen:.0%} of the images are near the boundary")
        return probabilities

    def report(self) -> dict[str, object]:
        """How the job's images were scored: the summary's `engine_report`."""
        return {
            "int8_scored": self.counts["int8"],
            "fp32_scored": self.counts["fp32"] + self.counts["rescored"],
            "near_boundary_rescored": self.counts["rescored"],
            "max_difference": None if self.max_difference is None else round(self.max_difference, 6),
            "margin": None if self.margin is None else round(self.margin, 6),
            "fell_back_to_fp32": self.gave_up,
        }

"""The int8 engine: ONNX Runtime on a statically quantized model, with every label held to fp32's.

On a CPU with int8 dot-product instructions (VNNI, AMX) the quantized ResNet-18 runs 3.4x as fast as
its fp32 export (README, Measured), but its probabilities differ from fp32's a little. The engine
sees to it that no label differs:

1. Before the job scores anything, it takes a sample of `SAMPLE_IMAGES` inputs spread over the whole
   job (an archive sorted by class or date would otherwise calibrate on one kind of image) and scores
   it in fp32: those are the sample's rows.
2. It calibrates the int8 model on as many more of the job's inputs (a shard of a bulk job: on the
   `calibration_paths` that the bulk job spread over all its inputs, since a shard of an archive
   filed by class may hold one class only). The int8 model is cached beside the fp32 export, so a
   bulk job's later shards (and later jobs with the same model file) skip this step.
3. It scores the sample with the int8 model too and adds what it saw to the model's check record
   (`CheckRecord`, beside it): the images checked so far, over every job, and the largest difference
   of any probability between int8 and fp32, `error`. Over `MAX_ERROR`, the job goes on in fp32 (as
   will later jobs with this int8 file: delete it to quantize afresh). Once the record holds
   `SAMPLE_IMAGES`, later jobs check a sample of `SPOT_IMAGES` only, so a bulk job's shards pay
   little for it while the evidence grows with every shard.
4. It scores the rest in int8, and scores again in fp32 every image whose int8 probabilities lie
   within `margin` (`SAFETY` times `error`, at least `MIN_MARGIN`) of the decision boundary: the
   model's threshold for two classes, a tie with the runner-up for more. Only images far from the
   boundary keep their int8 probability: their label would differ from fp32's only if int8 strayed
   `SAFETY` times further from fp32 than on any image the checks have seen.

A job too small to pay for this (under `SAMPLE_PAYS` times its sample) is scored in fp32, and so
is the rest of a job once over `MAX_RESCORED` of its images have needed fp32 anyway (a model unsure
of most images: int8 would then cost more than it saves). `--engine onnx` scores everything in
fp32, for exact probabilities.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cnnq.atomic_file import atomic_file
from cnnq.jobs.engines import Engine, NearBoundary
from cnnq.jobs.inputs import CALIBRATION_IMAGES
from cnnq.jobs.onnx_engine import OnnxEngine, as_input, int8_path_for, load_onnx, quantize_onnx

SAMPLE_IMAGES = CALIBRATION_IMAGES
"""Images to calibrate on, and as many again to check with."""
SPOT_IMAGES = 16
"""Images to check with once the model's record holds `SAMPLE_IMAGES`."""
SAMPLE_PAYS = 3
"""The job must have this many times the sample for int8 to pay."""
MAX_ERROR = 0.05
MAX_RESCORED = 0.3
SAFETY = 4.0
MIN_MARGIN = 0.02


def _in_chunks(engine: OnnxEngine, batch: np.ndarray, chunk: int = 32) -> np.ndarray:
    return np.concatenate([engine.run(batch[i : i + chunk]) for i in range(0, len(batch), chunk)])


@dataclass(frozen=True)
class CheckRecord:
    """What every check of one int8 model file has seen: kept beside it, keyed by its sha256."""

    int8_sha256: str
    images: int = 0
    max_difference: float = 0.0


def record_path(int8_path: Path) -> Path:
    return int8_path.with_suffix(".check.json")


def read_record(int8_path: Path, sha256: str) -> CheckRecord:
    """The record of this exact int8 file; an empty one if there is none, or it is of another file."""
    try:
        record = CheckRecord(**json.loads(record_path(int8_path).read_text()))
    except (OSError, ValueError, TypeError):
        return CheckRecord(sha256)
    return record if record.int8_sha256 == sha256 else CheckRecord(sha256)


def add_to_record(int8_path: Path, sha256: str, images: int, max_difference: float) -> CheckRecord:
    """Add one check to the record, under a lock: shards on other workers may be adding theirs."""
    path = record_path(int8_path)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = read_record(int8_path, sha256)
        new = CheckRecord(sha256, old.images + images, max(old.max_difference, max_difference))
        with atomic_file(path) as file:
            json.dump(asdict(new), file)
    return new


class Int8Engine(Engine):
    name = "onnx-int8"
    device = torch.device("cpu")

    def __init__(
        self,
        fp32: OnnxEngine,
        threads: int,
        near_boundary: NearBoundary,
        log: Callable[[str], None],
        job_size: int,
    ) -> None:
        self.fp32 = fp32
        self.threads = threads
        self.near_boundary = near_boundary
        self.log = log
        self.path = int8_path_for(fp32.path)
        self.int8: OnnxEngine | None = None
        self.checked = 0
        self.margin: float | None = None
        self.gave_up = False
        self.counts: Counter[str] = Counter()
        if self.path.is_file():
            try:
                self.int8 = load_onnx(self.path, threads)
            except Exception as error:  # a damaged cache file: calibrate afresh
                self.int8 = None
                log(f"int8: cannot load {self.path.name} ({type(error).__name__}); quantizing again")
        self.job_size = job_size
        # The checks of the int8 model in use; this job's own is added once it has checked.
        self.record = read_record(self.path, self.int8.sha256) if self.int8 else None
        self.told_too_few = False

    @property
    def wants_calibration(self) -> bool:  # type: ignore[override]
        return self.int8 is None and not self.gave_up and self.job_size >= SAMPLE_PAYS * SAMPLE_IMAGES

    @property
    def sample_size(self) -> int:  # type: ignore[override]
        if self.gave_up:
            return 0
        if self.int8 is None:
            wanted = 2 * SAMPLE_IMAGES
        elif self.record is not None and self.record.images >= SAMPLE_IMAGES:
            wanted = SPOT_IMAGES
        else:
            wanted = SAMPLE_IMAGES
        return wanted if self.job_size >= SAMPLE_PAYS * wanted else 0

    def calibrate(self, images: torch.Tensor) -> None:
        self._quantize(as_input(images))

    def prepare(self, sample: torch.Tensor) -> np.ndarray:
        batch = as_input(sample)
        exact = _in_chunks(self.fp32, batch)
        self.counts["fp32"] += len(batch)
        check = slice(None)
        if self.int8 is None:
            self._quantize(batch[0::2])
            check = slice(1, None, 2)
        if self.int8 is not None:
            self._check(batch[check], exact[check])
        return exact

    def _quantize(self, calibration: np.ndarray) -> None:
        began = time.perf_counter()
        try:
            quantize_onnx(self.fp32.path, calibration, self.path)
            self.int8 = load_onnx(self.path, self.threads)
            self.record = None
        except Exception as error:
            self._give_up(f"quantization failed ({type(error).__name__}: {error})")
            return
        seconds = time.perf_counter() - began
        self.log(f"int8: quantized in {seconds:.1f} s, calibrated on {len(calibration)} images")

    def _check(self, batch: np.ndarray, exact: np.ndarray) -> None:
        assert self.int8 is not None
        here = float(np.abs(_in_chunks(self.int8, batch) - exact).max())
        self.checked = len(batch)
        self.record = add_to_record(self.path, self.int8.sha256, len(batch), here)
        error = self.record.max_difference
        earlier = self.record.images - len(batch)
        seen = f"on {len(batch)} images here" + (f" and {earlier} in earlier checks" if earlier else "")
        if error > MAX_ERROR:
            self._give_up(
                f"{seen} its probabilities differ from fp32's by up to {error:.3f}, over {MAX_ERROR}"
            )
            return
        self.margin = max(SAFETY * error, MIN_MARGIN)
        self.log(
            f"int8: {seen} its probabilities differ from fp32's by at most {error:.4f}; images within "
            f"{self.margin:.3f} of the decision boundary are scored again in fp32"
        )

    def _give_up(self, why: str) -> None:
        self.gave_up = True
        self.int8 = None
        self.log(f"int8: {why}; scoring in fp32")

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        batch = as_input(images)
        if self.int8 is None or self.margin is None:
            if not self.gave_up and not self.told_too_few:
                self.told_too_few = True
                self.log(f"int8: {self.job_size} inputs are too few to pay for a check; scoring in fp32")
            self.counts["fp32"] += len(batch)
            return self.fp32.run(batch)
        probabilities = self.int8.run(batch)
        near = self.near_boundary(probabilities, self.margin)
        if near.any():
            probabilities[near] = self.fp32.run(np.ascontiguousarray(batch[near]))
        self.counts["int8"] += len(batch) - int(near.sum())
        self.counts["rescored"] += int(near.sum())
        seen = self.counts["int8"] + self.counts["rescored"]
        if seen >= 2 * SAMPLE_IMAGES and self.counts["rescored"] > MAX_RESCORED * seen:
            share = self.counts["rescored"] / seen
            self._give_up(f"{share:.0%} of the images lie near the decision boundary and need fp32")
        return probabilities

    def report(self) -> dict[str, object]:
        """How the job's images were scored: the summary's `engine_report`."""
        return {
            "int8_scored": self.counts["int8"],
            "fp32_scored": self.counts["fp32"] + self.counts["rescored"],
            "near_boundary_rescored": self.counts["rescored"],
            "checked_here": self.checked,
            "checked_in_all": self.record.images if self.record else 0,
            "max_difference": round(self.record.max_difference, 6) if self.record else None,
            "margin": None if self.margin is None else round(self.margin, 6),
            "fell_back_to_fp32": self.gave_up,
        }

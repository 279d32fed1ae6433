"""The infer job: score every input with a trained model, or flag it with the error that stopped it.

Inputs are `spec.inputs` (one shard of a bulk job) or whatever `spec.input` lists. Inputs that already
have a row (`reporter.done_inputs`: a shard delivered again, or `--resume`) are not scored again.
Images are decoded in DataLoader worker processes while the model scores the previous batch, and
each batch's rows go to the reporter in one call (one bulk insert).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnq.atomic_file import atomic_file
from cnnq.jobs.checkpoint import LoadedModel
from cnnq.jobs.device import configure_cpu, pick_device
from cnnq.jobs.engines import EagerEngine, Engine, resolve_engine
from cnnq.jobs.image_batches import ImageBatch, Preprocessing, image_batches
from cnnq.jobs.inputs import list_inputs, spread_sample
from cnnq.jobs.model_cache import cached_model
from cnnq.jobs.reporter import PredictionRow, Reporter
from cnnq.jobs.spec import InferSpec
from cnnq.outputs import (
    PREDICTIONS_ARTIFACT,
    positive_class,
    prediction_columns,
    prediction_record,
    write_csv,
)
from cnnq.settings import get_settings

__all__ = ["Decision", "infer_job", "list_inputs"]

WRITE_SECONDS = 1.0
WRITE_ROWS = 8192
"""Prediction rows are written to the reporter at least this often, or once this many are pending."""

WORKDIR_CSV = "predictions.csv"


@dataclass(frozen=True)
class Decision:
    """How probabilities become a label and a score.

    Two classes: the score is the positive class's probability and the label is the positive class
    when the score reaches the threshold (the most probable class when there is no threshold).
    More classes: the most probable class, and its probability as the score.
    """

    classes: list[str]
    positive_index: int | None
    threshold: float | None

    @classmethod
    def for_model(cls, loaded: LoadedModel, threshold: float | None) -> Decision:
        classes = list(loaded.info.classes)
        positive = positive_class(classes, loaded.info.positive_class)
        positive_index = None if positive is None else classes.index(positive)
        chosen = threshold if threshold is not None else loaded.info.threshold
        return cls(classes, positive_index, chosen if positive_index is not None else None)

    def near_boundary(self, probabilities: np.ndarray, margin: float) -> np.ndarray:
        """The rows whose label could change if each probability moved by up to `margin`."""
        if self.positive_index is not None:
            threshold = self.threshold if self.threshold is not None else 0.5
            return np.abs(probabilities[:, self.positive_index] - threshold) <= margin
        top = np.sort(probabilities, axis=1)
        return top[:, -1] - top[:, -2] <= 2 * margin

    @property
    def positive_class(self) -> str | None:
        return None if self.positive_index is None else self.classes[self.positive_index]

    def rows(self, inputs: Sequence[str], probabilities: np.ndarray) -> list[PredictionRow]:
        predicted = probabilities.argmax(axis=1)
        rows = []
        for path, probs, best in zip(inputs, probabilities, predicted, strict=True):
            if self.positive_index is None:
                index, score = int(best), float(probs[best])
            else:
                score = float(probs[self.positive_index])
                if self.threshold is None:
                    index = int(best)
                else:
                    index = self.positive_index if score >= self.threshold else 1 - self.positive_index
            rows.append(
                PredictionRow(
                    input=path,
                    label=self.classes[index],
                    score=score,
                    probabilities={name: float(p) for name, p in zip(self.classes, probs, strict=True)},
                )
            )
        return rows


class _CsvLog:
    """Rows appended to the workdir as they are scored, so that a job delivered again still exports
    the rows its first attempt wrote."""

    def __init__(self, path: Path, classes: list[str]) -> None:
        self.path = path
        self.classes = classes
        self.columns = prediction_columns(classes)
        new = not path.is_file() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns)
        if new:
            self.writer.writeheader()

    def append(self, rows: Sequence[PredictionRow]) -> None:
        for row in rows:
            self.writer.writerow(prediction_record(row, self.classes))
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def export(self, target: Path, inputs: Sequence[str]) -> int:
        """Write the logged rows of `inputs`, once each and in their order, to `target` atomically."""
        latest: dict[str, dict[str, str]] = {}
        with self.path.open(newline="", encoding="utf-8") as file:
            rows = csv.reader(file)
            next(rows, None)  # the header: by position, a log begun before a column was renamed reads too
            for values in rows:
                record = dict(zip(self.columns, values, strict=False))
                latest[record["input"]] = record
        with atomic_file(target) as file:
            return write_csv((latest[path] for path in inputs if path in latest), self.columns, file)


def decoders(asked: int, threads: int) -> int:
    """DataLoader workers to decode with: at most one fewer than the job's share of the cores (its
    threads). On a one-core share they only add copying between processes: a worker pinned to one
    core scored LeNet on 28 px PNGs at 614-732 img/s decoding itself, 400-472 with two decoders."""
    return min(asked, max(0, threads - 1))


class _CancellableScorer:
    """Scores a batch in slices of about `CNNQ_CANCEL_POLL_SECONDS`, the reporter's interval between
    cancel checks, asking it for one before each: a large batch on a slow engine never holds a cancel up."""

    def __init__(self, engine: Engine, reporter: Reporter) -> None:
        self.engine = engine
        self.reporter = reporter
        self.slice_seconds = get_settings().cancel_poll_seconds
        self.seconds_per_image: float | None = None

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        parts = []
        start = 0
        while start < len(images):
            self.reporter.check_stop()
            if self.seconds_per_image is None:
                size = min(len(images), 4)  # a first, small slice measures the engine's speed
            else:
                size = max(1, int(self.slice_seconds / max(self.seconds_per_image, 1e-6)))
            began = time.perf_counter()
            parts.append(self.engine.probabilities(images[start : start + size]))
            taken = len(parts[-1])
            self.seconds_per_image = (time.perf_counter() - began) / taken
            start += taken
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _batch_rows(
    batch: ImageBatch,
    inputs: Sequence[str],
    preprocessing: Preprocessing,
    decision: Decision,
    score: Callable[[torch.Tensor], np.ndarray],
    device: torch.device,
) -> list[PredictionRow]:
    """The batch's rows in input order: flagged inputs with their error, the others scored."""
    numbered = [(index, PredictionRow(input=inputs[index], error=error)) for index, error in batch.flagged]
    if batch.images is not None:
        images = batch.images.to(device, non_blocking=True)  # uint8: the cheap transfer
        probabilities = score(preprocessing.normalise(images))
        scored = decision.rows([inputs[i] for i in batch.indices], probabilities)
        numbered += zip(batch.indices, scored, strict=True)
    return [row for _, row in sorted(numbered, key=lambda pair: pair[0])]


def make_engine(
    spec: InferSpec,
    loaded: LoadedModel,
    workdir: Path,
    threads: int,
    decision: Decision,
    log: Callable[[str], None],
    todo: list[str],
    preprocessing: Preprocessing,
) -> Engine:
    """The engine to score `todo` with; `auto` falls back to eager (with a log line) if the export fails."""
    name = resolve_engine(spec.engine, loaded.device)
    if name == "eager":
        return EagerEngine(loaded)
    if loaded.device.type != "cpu":
        log(f"engine {name} runs on the CPU; the model stays off {loaded.device} for scoring")
    from cnnq.jobs.onnx_engine import onnx_engine

    try:
        fp32 = onnx_engine(loaded, workdir, threads)
    except Exception as error:
        if spec.engine != "auto":
            raise
        log(f"ONNX export failed ({type(error).__name__}: {error}); scoring with the eager engine")
        return EagerEngine(loaded)
    if name == "onnx":
        return fp32
    from cnnq.jobs.int8_engine import Int8Engine

    def sample(size: int) -> torch.Tensor:
        paths = spread_sample(todo, size)
        batch = next(image_batches(paths, preprocessing, batch_size=len(paths), num_workers=0))
        return preprocessing.normalise(batch.images) if batch.images is not None else torch.empty(0)

    return Int8Engine(fp32, threads, decision.near_boundary, log, len(todo), sample)


def infer_job(spec: InferSpec, workdir: Path, reporter: Reporter) -> None:
    started = time.monotonic()
    inputs = list(dict.fromkeys(spec.inputs)) if spec.inputs is not None else list_inputs(spec.input)
    done = reporter.done_inputs(inputs)
    todo = [path for path in inputs if path not in done]
    threads = configure_cpu()
    device = pick_device(spec.device)
    loaded = cached_model(spec.model_file, device, spec.model_file_sha256)
    decision = Decision.for_model(loaded, spec.threshold)
    workdir.mkdir(parents=True, exist_ok=True)
    exporting = spec.output is not None and spec.inputs is None  # a shard's rows are exported by its parent
    log = _CsvLog(workdir / WORKDIR_CSV, decision.classes) if exporting else None
    counts: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    engine: Engine | None = None

    pending: list[PredictionRow] = []
    last_write = time.monotonic()

    def write_pending() -> None:
        nonlocal last_write
        if pending:
            reporter.predictions(pending)
            pending.clear()
        last_write = time.monotonic()
        finished = len(done) + counts["scored"] + counts["flagged"]
        reporter.progress(finished / len(inputs))

    def record(rows: list[PredictionRow]) -> None:
        """Count and log `rows`, and hand them to the reporter about once per `WRITE_SECONDS`: each
        write is a transaction (a fenced UPDATE, an INSERT, a commit), and writing every batch of a
        small model cost more than scoring it. Rows still pending when a job dies are scored again
        when it resumes."""
        if log is not None:
            log.append(rows)
        pending.extend(rows)
        for row in rows:
            if row.error is not None:
                counts["flagged"] += 1
                errors[row.error] += 1
            else:
                counts["scored"] += 1
                labels[row.label or ""] += 1
        if len(pending) >= WRITE_ROWS or time.monotonic() - last_write >= WRITE_SECONDS:
            write_pending()

    try:
        if todo:
            preprocessing = Preprocessing(
                loaded.info.in_channels, loaded.info.image_size, loaded.info.mean, loaded.info.std
            )
            batches = image_batches(  # its workers start decoding while the engine loads
                todo,
                preprocessing,
                batch_size=spec.batch_size,
                num_workers=decoders(spec.num_workers, threads),
                pin_memory=device.type == "cuda",
            )
            engine = make_engine(spec, loaded, workdir, threads, decision, reporter.log, todo, preprocessing)
            reporter.log(
                f"scoring {len(todo)} of {len(inputs)} inputs ({len(done)} already have a row) with the "
                f"{engine.name} engine on {device}, {threads} threads, "
                f"threshold {decision.threshold if decision.threshold is not None else 'argmax'}"
            )
            reporter.progress(len(done) / len(inputs), f"scoring {len(todo)} inputs")
            score = _CancellableScorer(engine, reporter)
            for batch in batches:
                reporter.check_stop()
                record(_batch_rows(batch, todo, preprocessing, decision, score, engine.device))
            write_pending()
        else:
            reporter.log(f"all {len(inputs)} inputs already have a row; nothing to score")
    finally:
        if log is not None:
            log.close()

    seconds = time.monotonic() - started
    summary: dict[str, Any] = {
        "inputs": len(inputs),
        "already_done": len(done),
        "scored": counts["scored"],
        "flagged": counts["flagged"],
        "positive": labels[decision.positive_class] if decision.positive_class else None,
        "labels": dict(labels),
        "errors": dict(errors),
        "classes": decision.classes,
        "positive_class": decision.positive_class,
        "threshold": decision.threshold,
        "engine": engine.name if engine else None,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(todo) / seconds, 2) if seconds > 0 else None,
        "output": None,
    }
    if engine is not None and (report := engine.report()):
        summary["engine_report"] = report
    if log is not None and spec.output is not None:
        written = log.export(spec.output, inputs)
        summary["output"] = str(spec.output)
        reporter.artifact(PREDICTIONS_ARTIFACT, spec.output)
        if written < len(inputs):
            reporter.log(
                f"{spec.output} holds {written} of {len(inputs)} rows; the rest were scored by an "
                "earlier job (`cnnq results` exports them all)"
            )
    reporter.result(summary)

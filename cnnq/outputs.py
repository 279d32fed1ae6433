"""What jobs leave behind, named once for every layer (the glossary in `docs/architecture.md`).

Artifact kinds, the class a two-class model's score is about, and the predictions CSV: one row per
input with `input`, `label`, `score`, `error` (why a flagged input has no label), then one
`p_<class>` column per class. The infer job, `cnnq results`, a bulk job's `--output` and the
dashboard's download all write it through `write_csv` with `prediction_columns`. No imports but the
standard library: `cnnq.db` and `cnnq.jobs` both use it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, Protocol

MODEL_ARTIFACT = "model"
"""A training job's model file (`best.pt`): what eval and infer jobs load through `--model-from`."""
CHECKPOINT_ARTIFACT = "checkpoint"
"""A training job's checkpoint (`last.pt`): what a re-queued training job resumes from."""
REPORT_ARTIFACT = "report"
PREDICTIONS_ARTIFACT = "predictions"

BASE_COLUMNS = ("input", "label", "score", "error")


def positive_class(
    classes: Sequence[str], stored: str | None = None, dataset: str | None = None
) -> str | None:
    """The class a two-class model's score is about: the one its model file names, else PNEUMONIA
    for X-rays, else the second class. None for more than two classes (the score is then the label's
    probability)."""
    if len(classes) != 2:
        return None
    if stored in classes:
        return stored
    if dataset == "xray" and "PNEUMONIA" in classes:
        return "PNEUMONIA"
    return classes[1]


class PredictionLike(Protocol):
    input: str
    label: str | None
    score: float | None
    probabilities: Mapping[str, float] | None
    error: str | None


def prediction_columns(classes: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"p_{name}" for name in classes)]


def prediction_record(row: PredictionLike, classes: Sequence[str]) -> dict[str, Any]:
    """A prediction (a job's `PredictionRow` or a `Prediction` row read back) as one CSV record."""
    probabilities = row.probabilities or {}
    return {
        "input": row.input,
        "label": row.label,
        "score": row.score,
        "error": row.error,
        **{f"p_{name}": probabilities.get(name) for name in classes},
    }


def write_csv(records: Iterable[Mapping[str, Any]], columns: Sequence[str], stream: IO[str]) -> int:
    """Records as CSV with a header row; returns how many were written."""
    writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow(record)
        count += 1
    return count

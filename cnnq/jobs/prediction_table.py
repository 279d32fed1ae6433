"""The columns of exported predictions, shared by an infer job's CSV and `cnnq results`.

One row per input: `path`, `label`, `probability` (the score: the positive class's probability for a
two-class model, else the predicted class's), `error` (why a flagged input could not be scored), then
one `p_<class>` column per class.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

BASE_COLUMNS = ("path", "label", "probability", "error")


def prediction_columns(classes: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"p_{name}" for name in classes)]


def prediction_record(
    path: str,
    label: str | None,
    score: float | None,
    probabilities: Mapping[str, float] | None,
    error: str | None,
    classes: Sequence[str],
) -> dict[str, Any]:
    probabilities = probabilities or {}
    return {
        "path": path,
        "label": label,
        "probability": score,
        "error": error,
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

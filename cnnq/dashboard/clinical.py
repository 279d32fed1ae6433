"""What a two-class evaluation means at the bedside, computed from its stored report (ROC points and the
confusion matrix's class counts): sensitivity, specificity, PPV and NPV at any threshold, with 95%
confidence intervals, and the precision-recall curve.

Intervals: Wilson's score interval for a proportion (sensitivity, specificity, PPV, NPV). The ROC AUC's
is a percentile bootstrap, computed by the evaluation job where the per-image scores exist
(`cnnq.jobs.evaluate.auc_bootstrap_interval`) and stored in its report as `roc_auc_interval`.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson_interval(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of `successes / trials`; (0, 1) with no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    true_positives: float
    false_negatives: float
    true_negatives: float
    false_positives: float

    @property
    def sensitivity(self) -> float:
        return _ratio(self.true_positives, self.true_positives + self.false_negatives)

    @property
    def specificity(self) -> float:
        return _ratio(self.true_negatives, self.true_negatives + self.false_positives)

    @property
    def ppv(self) -> float:
        return _ratio(self.true_positives, self.true_positives + self.false_positives)

    @property
    def npv(self) -> float:
        return _ratio(self.true_negatives, self.true_negatives + self.false_negatives)

    def intervals(self) -> dict[str, tuple[float, float]]:
        tp, fn, tn, fp = self.true_positives, self.false_negatives, self.true_negatives, self.false_positives
        return {
            "sensitivity": wilson_interval(tp, tp + fn),
            "specificity": wilson_interval(tn, tn + fp),
            "PPV": wilson_interval(tp, tp + fp),
            "NPV": wilson_interval(tn, tn + fn),
        }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def class_counts(confusion: Sequence[Sequence[int]], positive_index: int) -> tuple[int, int]:
    """(positives, negatives) among the evaluated images: the confusion matrix's true-class rows."""
    rows = [sum(row) for row in confusion]
    return rows[positive_index], sum(rows) - rows[positive_index]


def roc_thresholds(roc: dict[str, Sequence[float | None]]) -> list[float]:
    """The ROC curve's thresholds, the first (infinite, stored as null) as +inf."""
    return [math.inf if t is None else float(t) for t in roc.get("thresholds", [])]


def operating_point(
    roc: dict[str, Sequence[float | None]], threshold: float, positives: int, negatives: int
) -> OperatingPoint:
    """The counts at `threshold` from the ROC curve: its last point whose threshold is still >= it. The
    stored curve keeps only its corners (scikit-learn drops collinear points), so between two of them
    this is the stricter corner's; at the evaluation's own threshold, `confusion_point` is exact."""
    thresholds = roc_thresholds(roc)
    index = max((i for i, t in enumerate(thresholds) if t >= threshold), default=0)
    tpr, fpr = float(roc["tpr"][index]), float(roc["fpr"][index])  # type: ignore[arg-type]
    tp, fp = round(tpr * positives), round(fpr * negatives)
    return OperatingPoint(threshold, tp, positives - tp, negatives - fp, fp)


def confusion_point(
    confusion: Sequence[Sequence[int]], positive_index: int, threshold: float
) -> OperatingPoint:
    """The exact counts at the threshold the evaluation labelled with: its confusion matrix's."""
    positives = sum(confusion[positive_index])
    negatives = sum(sum(row) for row in confusion) - positives
    tp = confusion[positive_index][positive_index]
    fp = sum(row[positive_index] for i, row in enumerate(confusion) if i != positive_index)
    return OperatingPoint(threshold, tp, positives - tp, negatives - fp, fp)


def precision_recall(
    roc: dict[str, Sequence[float | None]], positives: int, negatives: int
) -> tuple[list[float], list[float]]:
    """(recall, precision) at each ROC point that flags anything."""
    recall, precision = [], []
    for tpr, fpr in zip(roc["tpr"], roc["fpr"], strict=True):
        tp, fp = float(tpr) * positives, float(fpr) * negatives  # type: ignore[arg-type]
        if tp + fp > 0:
            recall.append(float(tpr))  # type: ignore[arg-type]
            precision.append(tp / (tp + fp))
    return recall, precision

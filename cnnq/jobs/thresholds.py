"""Decision thresholds for two-class models, picked on a validation set from its ROC curve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_curve

from cnnq.errors import UserError

YOUDEN = "youden"


def pick_threshold(
    y_true: Sequence[int],
    scores: Sequence[float],
    method: str | float = YOUDEN,
    target_sensitivity: float | None = None,
) -> float:
    """The score at or above which an input is called positive (label 1).

    `target_sensitivity` wins over `method`: the highest threshold whose sensitivity (true positive
    rate) reaches the target. `method="youden"` maximises sensitivity + specificity - 1; a number
    (or a numeric string) is returned as it is.
    """
    if target_sensitivity is None and not (isinstance(method, str) and method == YOUDEN):
        value = float(method)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"a threshold is between 0 and 1, not {value}")
        return value
    labels = np.asarray(y_true, dtype=int)
    values = np.asarray(scores, dtype=float)
    if labels.shape != values.shape or labels.ndim != 1:
        raise ValueError(f"y_true and scores differ in shape: {labels.shape} vs {values.shape}")
    if len(np.unique(labels)) != 2:
        raise UserError(
            "picking a threshold needs both classes in the validation set; use a larger --val-split"
        )
    fpr, tpr, thresholds = roc_curve(labels, values, pos_label=1, drop_intermediate=False)
    # roc_curve's first threshold is +inf (nothing called positive): never a usable choice.
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    if target_sensitivity is not None:
        if not 0.0 < target_sensitivity <= 1.0:
            raise ValueError(f"a target sensitivity is in (0, 1], not {target_sensitivity}")
        # Thresholds fall as tpr rises, so the first that reaches the target is the highest.
        reached = np.flatnonzero(tpr >= target_sensitivity - 1e-12)
        return float(min(thresholds[reached[0]], 1.0))
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))

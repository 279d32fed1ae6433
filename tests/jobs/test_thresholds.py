from __future__ import annotations

import numpy as np
import pytest

from cnnq.errors import UserError
from cnnq.jobs.thresholds import pick_threshold

# Negatives score 0.1..0.5, positives 0.4..0.9: the classes overlap between 0.4 and 0.5.
Y = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
S = [0.1, 0.2, 0.3, 0.45, 0.5, 0.4, 0.6, 0.7, 0.8, 0.9]


def _rates(threshold: float) -> tuple[float, float]:
    y, s = np.array(Y), np.array(S)
    called = s >= threshold
    return called[y == 1].mean(), (~called[y == 0]).mean()


def test_youden_maximises_sensitivity_plus_specificity() -> None:
    threshold = pick_threshold(Y, S)
    assert threshold == pytest.approx(0.6)  # sensitivity 0.8, specificity 1.0: J = 0.8
    best = max(sum(_rates(t)) for t in S)
    assert sum(_rates(threshold)) == pytest.approx(best)


def test_target_sensitivity_takes_the_highest_threshold_that_reaches_it() -> None:
    assert pick_threshold(Y, S, target_sensitivity=0.8) == pytest.approx(0.6)
    threshold = pick_threshold(Y, S, target_sensitivity=0.95)
    assert threshold == pytest.approx(0.4)
    sensitivity, specificity = _rates(threshold)
    assert sensitivity == 1.0
    assert specificity == pytest.approx(0.6)  # 0.45 and 0.5 are now false positives


def test_target_sensitivity_wins_over_method() -> None:
    assert pick_threshold(Y, S, method="youden", target_sensitivity=0.95) == pytest.approx(0.4)


def test_a_number_is_kept_as_given() -> None:
    assert pick_threshold(Y, S, method=0.3) == 0.3
    assert pick_threshold(Y, S, method="0.25") == 0.25
    with pytest.raises(ValueError, match="between 0 and 1"):
        pick_threshold(Y, S, method=1.5)


def test_perfectly_separated_scores() -> None:
    threshold = pick_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert 0.2 < threshold <= 0.8


def test_one_class_only_is_refused_with_a_fix() -> None:
    with pytest.raises(UserError, match="both classes"):
        pick_threshold([1, 1, 1], [0.2, 0.5, 0.9])

"""The evaluation job's ROC AUC interval: a stratified percentile bootstrap of the per-image scores."""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from cnnq.jobs.evaluate import auc_bootstrap_interval


def _scores(count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels (40% positive) and scores that separate them imperfectly, with ties (two decimals)."""
    rng = np.random.default_rng(seed)
    is_positive = (rng.random(count) < 0.4).astype(int)
    return is_positive, np.round(rng.random(count) * 0.7 + 0.3 * is_positive, 2)


def test_auc_interval_contains_the_auc_narrows_with_more_images_and_repeats() -> None:
    small, large = _scores(200), _scores(2000)
    started = time.perf_counter()
    interval = auc_bootstrap_interval(*large)
    assert time.perf_counter() - started < 1.0  # 1,000 resamples of 2,000 images, cheap enough to always run
    for is_positive, scores in (small, large):
        found = auc_bootstrap_interval(is_positive, scores)
        assert found["low"] < roc_auc_score(is_positive, scores) < found["high"]
    assert (
        interval["high"] - interval["low"]
        < (auc_bootstrap_interval(*small)["high"] - auc_bootstrap_interval(*small)["low"]) / 2
    )
    assert auc_bootstrap_interval(*large) == interval  # a fixed seed: the same scores, the same interval
    assert auc_bootstrap_interval(*large, seed=7) != interval
    assert (interval["method"], interval["resamples"]) == ("percentile bootstrap", 1000)


def test_each_resample_is_roc_auc_score_of_the_drawn_images() -> None:
    """The vectorised resample AUCs agree with scikit-learn's on the same draws, resampled by hand."""
    is_positive, scores = _scores(300)
    positives, negatives = scores[is_positive == 1], np.sort(scores[is_positive == 0])
    rng = np.random.default_rng(0)  # the function's draws, in its order: negatives then positives
    negative_draws = rng.multinomial(len(negatives), np.full(len(negatives), 1 / len(negatives)), size=5)
    positive_draws = rng.multinomial(len(positives), np.full(len(positives), 1 / len(positives)), size=5)
    by_hand = [
        roc_auc_score(
            np.r_[np.ones(len(positives)), np.zeros(len(negatives))],
            np.r_[positives, negatives],
            sample_weight=np.r_[positive_draws[b], negative_draws[b]],
        )
        for b in range(5)
    ]
    found = auc_bootstrap_interval(is_positive, scores, resamples=5, level=1.0)  # level 1: min and max
    assert np.isclose(found["low"], min(by_hand)) and np.isclose(found["high"], max(by_hand))

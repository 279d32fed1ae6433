"""The Sweeps page's per-epoch chart on trials as Optuna stores them: every trial's epochs are drawn,
each in its status's colour, a failed trial's too."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from cnnq.dashboard.status_colors import STATUS_COLORS
from cnnq.dashboard.sweep_views import _per_epoch


def test_every_trials_epochs_are_drawn_in_its_status_colour_a_failed_ones_too() -> None:
    trials = [
        optuna.trial.create_trial(
            state=state, value=0.9 if state == TrialState.COMPLETE else None, intermediate_values=values
        )
        for state, values in (
            (TrialState.COMPLETE, {1: 0.5, 2: 0.7, 3: 0.9}),
            (TrialState.PRUNED, {1: 0.2}),
            (TrialState.FAIL, {1: 0.4, 2: 0.45}),  # a trial whose job failed in its third epoch
        )
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    spec = _per_epoch(trials, "val_accuracy").to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [(row["trial"], row["epoch"], row["status"]) for row in rows] == [
        (0, 1, "SUCCEEDED"),
        (0, 2, "SUCCEEDED"),
        (0, 3, "SUCCEEDED"),
        (1, 1, "PRUNED"),
        (2, 1, "FAILED"),
        (2, 2, "FAILED"),
    ]
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domain"] == ["SUCCEEDED", "FAILED", "PRUNED"]  # a value outside the domain is not drawn
    assert scale["range"] == [STATUS_COLORS[status] for status in scale["domain"]]

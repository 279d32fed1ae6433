"""The hyperparameters a training job records are the ones its optimizer is built with."""

from __future__ import annotations

import pytest
from torch import nn

from cnnq.jobs.hyperparameters import HYPERPARAMETERS, effective_hyperparameters
from cnnq.jobs.spec import TrainSpec
from cnnq.jobs.train import make_optimizer


def _spec(**options: object) -> TrainSpec:
    return TrainSpec.model_validate({"model": "lenet", "dataset": "mnist", "data_root": "/data", **options})


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"optimizer": "adam"},
        {"optimizer": "adamw", "weight_decay": 0.05},
        {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9},
    ],
)
def test_recorded_values_are_the_optimizers(options: dict[str, object]) -> None:
    spec = _spec(**options)
    used = effective_hyperparameters(spec)
    assert list(used) == list(HYPERPARAMETERS)
    group = make_optimizer(spec, nn.Linear(2, 2)).param_groups[0]
    assert used["lr"] == group["lr"]
    assert used["weight_decay"] == group["weight_decay"]
    assert used["momentum"] == group.get("momentum")  # None: Adam and AdamW have none


def test_the_models_recipe_fills_what_the_user_left_out() -> None:
    used = effective_hyperparameters(
        TrainSpec.model_validate({"model": "mnist-cnn", "dataset": "mnist", "data_root": "/data"})
    )
    assert (used["optimizer"], used["lr"], used["weight_decay"], used["momentum"]) == (
        "adam",
        3e-3,
        0.0,
        None,
    )
    assert used["augment"] == "rotation=10,shift=0.1"

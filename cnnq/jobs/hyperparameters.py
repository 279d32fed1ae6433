"""The hyperparameters a training job actually uses: its spec after the model's recipe and the
optimizer's defaults are applied.

The stored spec keeps what the user gave (`lr: null` means "the optimizer's default"); this is what the
optimizer and the loop are built from, recorded with the job (its result's `hyperparameters`) so that
every view shows the values used. `tests/jobs/test_hyperparameters.py` checks them against the
optimizer that `cnnq.jobs.train.make_optimizer` builds.
Light on imports: the dashboard uses it for jobs that have not recorded them yet.
"""

from __future__ import annotations

from typing import Any

from cnnq.jobs.spec import TrainSpec
from cnnq.models.recipes import DEFAULT_LR, DEFAULT_WEIGHT_DECAY

HYPERPARAMETERS = (
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "schedule",
    "batch_size",
    "epochs",
    "augment",
    "label_smoothing",
    "precision",
    "image_size",
    "pretrained",
    "seed",
)
"""Their names, in the order views show them."""


def effective_hyperparameters(spec: TrainSpec) -> dict[str, Any]:
    """One value per name of `HYPERPARAMETERS`; `momentum` is None for Adam and AdamW (they have none)."""
    return {
        "optimizer": spec.optimizer,
        "lr": spec.lr or DEFAULT_LR[spec.optimizer],
        "weight_decay": DEFAULT_WEIGHT_DECAY[spec.optimizer]
        if spec.weight_decay is None
        else spec.weight_decay,
        "momentum": spec.momentum if spec.optimizer == "sgd" else None,
        "schedule": spec.schedule,
        "batch_size": spec.batch_size,
        "epochs": spec.epochs,
        "augment": spec.augment or "none",
        "label_smoothing": spec.label_smoothing,
        "precision": spec.precision,
        "image_size": spec.image_size,
        "pretrained": spec.pretrained,
        "seed": spec.seed,
    }

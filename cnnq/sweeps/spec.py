"""A hyperparameter sweep's spec: what to search, how, and for how long; the sweep job's `spec`.

Light on imports (pydantic only): the CLI builds it (`cnnq.sweeps.params`), workers turn it into an Optuna
study (`cnnq.sweeps.study`) and each trial's train spec (`trial_spec`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SWEEP_KIND = "sweep"
"""The kind of a sweep's job row. It never runs itself: its trials, train jobs, are its children."""

Distribution = Literal["uniform", "loguniform", "int", "logint", "choice"]
Direction = Literal["maximize", "minimize"]
PrunerName = Literal["asha", "hyperband", "median", "none"]
SamplerName = Literal["tpe", "random", "grid"]

EPOCH_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
"""Metrics a train job reports every epoch: what a pruner can judge."""
FINAL_METRICS = ("test_accuracy", "test_loss")
"""Metrics a train job reports once, at its end (of its best epoch's model)."""


class Param(BaseModel):
    """One searched train option: a range (`low`..`high`, on a log scale for loguniform and logint) or
    a list of choices. Values are the option's own JSON values (`adam`, 64, 0.01, `none`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    distribution: Distribution
    low: float | None = None
    high: float | None = None
    choices: list[Any] | None = None

    @property
    def text(self) -> str:
        """As `--param` takes it: `lr=loguniform:0.0001:0.1`, `optimizer=choice:adam,sgd`."""
        if self.choices is not None:
            items = ["none" if c is None else str(c) for c in self.choices]
            joiner = "|" if any("," in item for item in items) else ","
            return f"{self.name}=choice:{joiner.join(items)}"
        return f"{self.name}={self.distribution}:{_number(self.low)}:{_number(self.high)}"

    @property
    def whole(self) -> bool:
        return self.distribution in ("int", "logint")

    def contains(self, value: Any) -> bool:
        """Whether `value` is a point of this parameter's space (an enqueued trial's values may not be)."""
        if self.choices is not None:
            return any(value == c and type(value) is type(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.whole and value != int(value):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sweep"] = "sweep"
    train: dict[str, Any] = Field(
        description="The fixed train options, as given: a trial's spec is these plus its values, and its "
        "model's recipe fills what neither sets."
    )
    params: list[Param] = Field(min_length=1)
    trials: int = Field(ge=1, le=10_000, description="Trials in all, trial 0 (the recipe) included.")
    parallel: int = Field(ge=1, le=1000, description="Trials queued or running at once.")
    metric: str
    direction: Direction
    prune: PrunerName
    sampler: SamplerName
    seed: int = Field(ge=0, description="The sampler's seed, and every trial's training seed.")
    enqueue: list[dict[str, Any]] = Field(
        description="Trials run first, in order, each a value for every parameter: trial 0 is the model's "
        "recipe, then each --enqueue."
    )

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial trains: the pruners' full budget."""
        if any(p.name == "epochs" for p in self.params):
            epochs = self.param("epochs")
            return int(max(epochs.choices) if epochs.choices is not None else epochs.high or 1)
        return int(self.train.get("epochs", 5))

    def better(self, a: float, b: float) -> bool:
        """Whether metric value `a` beats `b`."""
        return a > b if self.direction == "maximize" else a < b


def default_direction(metric: str) -> Direction:
    return "minimize" if metric.endswith("loss") else "maximize"


def trial_spec(sweep: SweepSpec, values: dict[str, Any]) -> dict[str, Any]:
    """A trial's train spec (JSON) before validation: the fixed options, its values, the sweep's seed."""
    return {"seed": sweep.seed, **sweep.train, **values, "kind": "train"}


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"

"""What a sweep has found, read from cnnq's tables alone (no Optuna, no torch): each trial with the values it
trained with, its metric, how many epochs it trained and, if pruned, at which epoch and how much time that
saved; the best trial; the counts. `cnnq sweep show`, `cnnq sweep best` and the dashboard print this.

A trial's value is the best of its metric over its epochs (for val_accuracy: the epoch whose model the
trial keeps); the study is told the same value when the trial SUCCEEDED.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cnnq.db.orm import Job, Metric, SweepTrial
from cnnq.db.status import FINISHED, JobStatus
from cnnq.sweeps.spec import SweepSpec


@dataclass(frozen=True)
class TrialSummary:
    number: int
    job_id: str
    status: str
    values: dict[str, Any]
    """The parameters' values the trial trained with (trial 0: the recipe's)."""
    value: float | None
    epochs: int
    """Epochs it trained (its run so far, for a trial still running)."""
    planned_epochs: int
    pruned_at: int | None
    """The epoch after which its pruner stopped it."""
    seconds: float
    """Seconds its epochs took."""
    saved_seconds: float
    """A pruned trial's epochs not trained, at its own mean epoch time."""


@dataclass(frozen=True)
class SweepSummary:
    sweep_id: str
    status: str
    message: str | None
    spec: SweepSpec
    trials: list[TrialSummary]
    """Best first: by the metric, trials without a value last."""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> TrialSummary | None:
        """The best SUCCEEDED trial (the earliest among equals)."""
        done = [t for t in self.trials if t.status == JobStatus.SUCCEEDED and t.value is not None]
        return done[0] if done else None

    @property
    def recipe(self) -> TrialSummary | None:
        return next((t for t in self.trials if t.number == 0), None)

    @property
    def ended(self) -> int:
        return sum(n for status, n in self.counts.items() if JobStatus(status) in FINISHED)

    @property
    def saved_seconds(self) -> float:
        return sum(t.saved_seconds for t in self.trials)

    @property
    def full_seconds(self) -> float:
        """What every trial trained to its end would have taken: the epochs trained plus those pruned."""
        return sum(t.seconds for t in self.trials) + self.saved_seconds

    def pruned_at(self) -> dict[int, int]:
        """How many trials were pruned after each epoch."""
        return dict(sorted(Counter(t.pruned_at for t in self.trials if t.pruned_at is not None).items()))

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "id": self.sweep_id,
            "status": self.status,
            "message": self.message,
            "metric": self.spec.metric,
            "direction": self.spec.direction,
            "sampler": self.spec.sampler,
            "prune": self.spec.prune,
            "planned_trials": self.spec.trials,
            "counts": self.counts,
            "best": asdict(best) if best is not None else None,
            "pruned_at": {str(epoch): n for epoch, n in self.pruned_at().items()},
            "saved_seconds": round(self.saved_seconds, 3),
            "full_seconds": round(self.full_seconds, 3),
            "trials": [asdict(t) for t in self.trials],
        }


def values_text(values: dict[str, Any]) -> str:
    """`lr=0.002032, momentum=0.95`: a trial's values as people read them."""
    return ", ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in values.items()
    )


def best_value(values: Iterable[float | None], direction: str) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if direction == "maximize" else min(finite)


def trial_value(session: Session, job_id: str, spec: SweepSpec) -> float | None:
    values = session.scalars(select(Metric.value).where(Metric.job_id == job_id, Metric.name == spec.metric))
    return best_value(values, spec.direction)


def summarize(session: Session, sweep: Job) -> SweepSummary:
    spec = SweepSpec.model_validate(sweep.spec)
    rows = session.execute(
        select(SweepTrial.number, Job.id, Job.status, Job.spec)
        .join(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id == sweep.id)
    ).all()
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for job_id, name, step, value in session.execute(
        select(Metric.job_id, Metric.name, Metric.step, Metric.value)
        .join(SweepTrial, SweepTrial.job_id == Metric.job_id)
        .where(SweepTrial.sweep_id == sweep.id, Metric.name.in_((spec.metric, "epoch_seconds")))
    ):
        series[job_id][name].append((step, value))
    trials = []
    for number, job_id, status, train in rows:
        epoch_seconds = [value for _, value in series[job_id]["epoch_seconds"]]
        epochs = len(epoch_seconds)
        planned = int(train.get("epochs", epochs))
        pruned = status == JobStatus.PRUNED
        mean = sum(epoch_seconds) / epochs if epochs else 0.0
        trials.append(
            TrialSummary(
                number=number,
                job_id=job_id,
                status=str(status),
                values={p.name: train.get(p.name) for p in spec.params},
                value=best_value((v for _, v in series[job_id][spec.metric]), spec.direction),
                epochs=epochs,
                planned_epochs=planned,
                pruned_at=epochs if pruned else None,
                seconds=sum(epoch_seconds),
                saved_seconds=max(planned - epochs, 0) * mean if pruned else 0.0,
            )
        )
    sign = -1.0 if spec.direction == "maximize" else 1.0
    trials.sort(key=lambda t: (t.value is None, sign * (t.value or 0.0), t.number))
    counts = Counter(str(t.status) for t in trials)
    return SweepSummary(sweep.id, str(sweep.status), sweep.message, spec, trials, dict(counts))

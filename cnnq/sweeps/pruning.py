"""A trial's epoch reports to its sweep's study, and pruning: the hook of its reporter's `metrics`.

`cnnq.lifecycle.claim` gives every child job's `SqlReporter` a `TrialReports`. At its first epoch it
finds out whether its job is a sweep's trial (a `sweep_trials` row); if so, each epoch's metric goes to
the study once the reporter has recorded it, and when the sweep's pruner judges the trial not worth more
epochs the hook raises `JobPruned`: the job ends PRUNED at that epoch boundary. The training loop knows
nothing of this. A report the study cannot take (its database busy past its timeout) is logged and
skipped, never failing the trial.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import select

from cnnq.db.orm import Job, SweepTrial
from cnnq.db.session import session_scope
from cnnq.jobs.reporter import JobPruned
from cnnq.sweeps.spec import SweepSpec

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


class TrialReports:
    """`on_metrics` of job `job_id`'s reporter; a no-op unless the job is a sweep's trial."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._loaded = False
        self._trial: optuna.trial.Trial | None = None
        self._metric = ""

    def __call__(self, step: int, values: Mapping[str, float]) -> None:
        if not self._loaded:
            self._loaded = True
            try:
                self._load()
            except Exception as error:
                log.warning(
                    "job %s: cannot reach its sweep's study (%s); it trains unpruned", self.job_id, error
                )
        if self._trial is None or self._metric not in values:
            return
        value = float(values[self._metric])
        try:
            self._trial.report(value, step)
            prune = self._trial.should_prune()
        except Exception as error:
            log.warning(
                "job %s: epoch %d's %s did not reach its study (%s)", self.job_id, step, self._metric, error
            )
            return
        if prune:
            raise JobPruned(f"pruned after epoch {step}: {self._metric} {value:.4f}")

    def _load(self) -> None:
        with session_scope() as session:
            found = session.execute(
                select(SweepTrial.sweep_id, SweepTrial.study_trial_id, Job.spec)
                .join(Job, Job.id == SweepTrial.sweep_id)
                .where(SweepTrial.job_id == self.job_id)
            ).first()
        if found is None:
            return
        import optuna

        from cnnq.sweeps.study import load_study

        sweep_id, study_trial_id, sweep_spec = found
        spec = SweepSpec.model_validate(sweep_spec)
        self._metric = spec.metric
        self._trial = optuna.trial.Trial(load_study(sweep_id, spec), study_trial_id)

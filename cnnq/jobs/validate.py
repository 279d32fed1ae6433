"""Checks on a spec that need the file system or the model zoo, run at submit time."""

from __future__ import annotations

from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec


def validate_spec(spec: TrainSpec | EvalSpec | InferSpec) -> None:
    """Raise `UserError` naming the problem and its fix; return quietly when the job can run."""

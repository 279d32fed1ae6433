"""One entry point for every kind of job: the queue's workers and `cnnq run` both call `run_job`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnq.jobs.reporter import Reporter
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec


def run_job(spec: TrainSpec | EvalSpec | InferSpec, workdir: Path, reporter: Reporter) -> dict[str, Any]:
    if isinstance(spec, TrainSpec):
        from cnnq.jobs.train import train_job

        return train_job(spec, workdir, reporter)
    if isinstance(spec, EvalSpec):
        from cnnq.jobs.evaluate import evaluate_job

        return evaluate_job(spec, workdir, reporter)
    from cnnq.jobs.infer import infer_job

    return infer_job(spec, workdir, reporter)

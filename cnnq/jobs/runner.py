"""One entry point for every kind of job: the queue's workers and `cnnq run` both call `run_job`."""

from __future__ import annotations

from pathlib import Path

from cnnq.jobs.reporter import Reporter
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec


def run_job(spec: TrainSpec | EvalSpec | InferSpec, workdir: Path, reporter: Reporter) -> None:
    """Run the job; what it did reaches the world through `reporter` alone, its result included."""
    if isinstance(spec, TrainSpec):
        from cnnq.jobs.train import train_job

        train_job(spec, workdir, reporter)
    elif isinstance(spec, EvalSpec):
        from cnnq.jobs.evaluate import evaluate_job

        evaluate_job(spec, workdir, reporter)
    else:
        from cnnq.jobs.infer import infer_job

        infer_job(spec, workdir, reporter)

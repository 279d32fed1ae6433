"""Training curves within an epoch: throttled by the clock, and kept out of the per-epoch history."""

from __future__ import annotations

from typing import Any

import torch

from cnnq.jobs.reporter import RecordingReporter
from cnnq.jobs.training_curve import TrainingCurve


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=lr)


def test_a_point_every_interval_not_every_batch() -> None:
    reporter = RecordingReporter()
    optimizer = _optimizer(0.05)
    every_time = TrainingCurve(reporter, every_seconds=0.0)
    for step in range(1, 4):
        every_time.batch(step, torch.tensor(2.0 / step, dtype=torch.float64), optimizer)
    assert reporter.curve_points == {
        (1, "train_loss"): 2.0,
        (1, "lr"): 0.05,
        (2, "train_loss"): 1.0,
        (2, "lr"): 0.05,
        (3, "train_loss"): 2.0 / 3,
        (3, "lr"): 0.05,
    }
    assert reporter.history() == []  # the per-epoch metrics know nothing of it
    quiet = RecordingReporter()
    throttled = TrainingCurve(quiet, every_seconds=3600.0)
    for step in range(1, 1000):
        throttled.batch(step, torch.tensor(1.0), optimizer)
    assert quiet.curve_points == {}


def test_curve_rows_stay_out_of_the_jobs_history(use_settings: Any, sqlite_url: str) -> None:
    use_settings(CNNQ_DATABASE_URL=sqlite_url)
    from cnnq.db.jobs import create_job
    from cnnq.db.records import CURVE_PREFIX, curve_points, last_metrics, metric_history, record_metrics
    from cnnq.db.session import session_scope

    with session_scope() as session:
        job_id = create_job(session, kind="train", spec={"kind": "train"}, queue="cpu").id
        record_metrics(session, job_id, 1, {"train_loss": 0.5, "val_accuracy": 0.8})
        record_metrics(session, job_id, 40, {CURVE_PREFIX + "train_loss": 0.7, CURVE_PREFIX + "lr": 0.1})
    with session_scope() as session:
        assert metric_history(session, job_id) == [{"epoch": 1, "train_loss": 0.5, "val_accuracy": 0.8}]
        assert last_metrics(session, job_id) == {"train_loss": 0.5, "val_accuracy": 0.8}
        assert [(step, name, value) for step, name, value, _ in curve_points(session, job_id)] == [
            (40, "lr", 0.1),
            (40, "train_loss", 0.7),
        ]

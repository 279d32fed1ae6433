from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from cnnq.db.clock import read_db_now
from cnnq.db.jobs import create_job, is_lost, lost_jobs, request_cancel, transition, update_job
from cnnq.db.migrate import current_revision, head_revision, upgrade_database
from cnnq.db.orm import Prediction
from cnnq.db.records import insert_predictions, metric_history, record_metrics, scored_inputs
from cnnq.db.session import session_scope
from cnnq.db.status import IllegalTransition, JobStatus
from cnnq.db.tables import utcnow


@pytest.fixture
def db(database_url: str) -> str:
    upgrade_database(database_url)
    return database_url


def test_migrations_reach_head(db: str) -> None:
    assert current_revision(db) == head_revision()


def test_status_moves_forward_only(db: str) -> None:
    with session_scope(db) as s:
        job = create_job(s, kind="train", spec={"model": "lenet"}, queue="cpu")
        transition(s, job.id, JobStatus.RUNNING, worker="w1")
        done = transition(s, job.id, JobStatus.SUCCEEDED)
        assert done.status == JobStatus.SUCCEEDED and done.progress == 1.0 and done.finished_at is not None
        with pytest.raises(IllegalTransition):
            transition(s, job.id, JobStatus.RUNNING)
        with pytest.raises(IllegalTransition):
            transition(s, job.id, JobStatus.QUEUED)


def test_only_one_claimant_wins(db: str) -> None:
    with session_scope(db) as s:
        job_id = create_job(s, kind="train", spec={}, queue="cpu").id
    with session_scope(db) as s:
        transition(s, job_id, JobStatus.RUNNING, worker="a")
    with session_scope(db) as s, pytest.raises(IllegalTransition):
        transition(s, job_id, JobStatus.RUNNING, worker="b")


def test_cancel_a_queued_job_ends_it(db: str) -> None:
    with session_scope(db) as s:
        job_id = create_job(s, kind="train", spec={}, queue="cpu").id
        assert request_cancel(s, job_id).status == JobStatus.CANCELLED


def test_metrics_are_idempotent(db: str) -> None:
    with session_scope(db) as s:
        job_id = create_job(s, kind="train", spec={}, queue="cpu").id
        record_metrics(s, job_id, 1, {"train_loss": 0.5})
        record_metrics(s, job_id, 1, {"train_loss": 0.4, "val_accuracy": 0.9})
        record_metrics(s, job_id, 2, {"train_loss": 0.3})
        assert metric_history(s, job_id) == [
            {"epoch": 1, "train_loss": 0.4, "val_accuracy": 0.9},
            {"epoch": 2, "train_loss": 0.3},
        ]


def test_predictions_never_duplicate(db: str) -> None:
    with session_scope(db) as s:
        job_id = create_job(s, kind="infer", spec={}, queue="cpu").id
        rows = [{"input": f"/x/{i}.png", "label": "A", "score": 0.1} for i in range(1500)]
        insert_predictions(s, job_id, job_id, rows)
        assert len(scored_inputs(s, job_id)) == 1500
        insert_predictions(
            s, job_id, job_id, [{**rows[0], "label": "B"}, {"input": "/y.png", "error": "empty"}]
        )
        assert len(scored_inputs(s, job_id)) == 1501
        labels = s.scalars(select(Prediction.label).where(Prediction.input == "/x/0.png")).all()
        assert labels == ["A"], "an input already scored keeps its first row"


def test_stale_heartbeat_is_lost(db: str) -> None:
    with session_scope(db) as s:
        job_id = create_job(s, kind="train", spec={}, queue="cpu").id
        transition(s, job_id, JobStatus.RUNNING)
        update_job(s, job_id, heartbeat_at=utcnow() - timedelta(minutes=5))
    with session_scope(db) as s:
        lost = lost_jobs(s, timedelta(minutes=1))
        assert [j.id for j in lost] == [job_id]
        now = read_db_now(s)
        assert is_lost(lost[0], timedelta(minutes=1), now)
        assert not is_lost(lost[0], timedelta(minutes=10), now)

"""A sweep's trials on real SQLite and PostgreSQL, a real Redis and Optuna's real storage, without torch:
trials are ended as a worker ends them (a real claim, metrics, `finish_claim`), by several processes at
once, so that asks race. Every trial number exists once, the study's trial states follow the jobs', and
no study trial is left RUNNING."""

from __future__ import annotations

import multiprocessing
import random
import time
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, update

from cnnq.db.jobs import get_job
from cnnq.db.migrate import current_revision, head_revision, upgrade_database
from cnnq.db.orm import Job, Sweep, SweepTrial
from cnnq.db.records import record_metrics
from cnnq.db.session import get_engine, session_scope
from cnnq.db.status import JobStatus
from cnnq.db.tables import metadata, owned_by_cnnq, utcnow
from cnnq.jobs.spec import TrainSpec
from cnnq.lifecycle.cancel import cancel_job
from cnnq.lifecycle.claim import Claim, claim_job, finish_claim, give_back
from cnnq.lifecycle.recovery import Recovery
from cnnq.sweeps.params import build_sweep, parse_param
from cnnq.sweeps.spec import SweepSpec
from cnnq.sweeps.submit import submit_sweep
from cnnq.sweeps.trials import LEASE_SECONDS, advance_sweep, trial_job_id

STATES = {"SUCCEEDED": "COMPLETE", "PRUNED": "PRUNED", "FAILED": "FAIL", "CANCELLED": "FAIL"}


def lenet_sweep(**settings: Any) -> SweepSpec:
    train = {"model": "lenet", "dataset": "mnist", "data_root": "/nowhere", "epochs": 3, "device": "cpu"}
    params = [parse_param("lr=loguniform:1e-3:0.5"), parse_param("momentum=uniform:0.8:0.99")]
    defaults = {"trials": 6, "parallel": 2, "sampler": "random", "prune": "none"}
    return build_sweep(TrainSpec.model_validate(train), train, params, [], defaults | settings)


def end_trial(job_id: str, status: JobStatus, value: float = 0.5, worker: str = "test-worker") -> bool:
    """End a queued trial as a worker would; False if another process claimed it first."""
    claim = claim_job(job_id, worker)
    if not isinstance(claim, Claim):
        return False
    with session_scope() as session:
        record_metrics(session, job_id, 1, {"val_accuracy": value, "epoch_seconds": 1.0})
    fields: dict[str, Any] = {"message": status.lower()}
    if status == JobStatus.FAILED:
        fields |= {"error_type": "RuntimeError", "error_message": "diverged"}
    finish_claim(job_id, claim.token, target=status, **fields)
    return True


def children(sweep_id: str, *statuses: JobStatus) -> list[str]:
    with session_scope() as session:
        query = select(Job.id).where(Job.parent_id == sweep_id).order_by(Job.id)
        if statuses:
            query = query.where(Job.status.in_(statuses))
        return list(session.scalars(query))


def study_trials(sweep_id: str) -> list[Any]:
    import optuna

    from cnnq.sweeps.study import storage

    return optuna.load_study(study_name=sweep_id, storage=storage()).get_trials(deepcopy=False)


def assert_consistent(sweep_id: str, spec: SweepSpec) -> None:
    """Each trial number once, with one job; the study's states are the jobs' (values included)."""
    with session_scope() as session:
        rows = session.execute(
            select(SweepTrial.number, SweepTrial.job_id, Job.status, SweepTrial.told)
            .join(Job, Job.id == SweepTrial.job_id)
            .where(SweepTrial.sweep_id == sweep_id)
            .order_by(SweepTrial.number)
        ).all()
    assert [number for number, *_ in rows] == list(range(spec.trials))
    assert [job_id for _, job_id, *_ in rows] == children(sweep_id)
    assert all(told for *_, told in rows)
    trials = {t.number: t for t in study_trials(sweep_id)}
    assert sorted(trials) == list(range(spec.trials))
    for number, _, status, _ in rows:
        assert trials[number].state.name == STATES[status], (number, status, trials[number].state)


def race(sweep_id: str, seed: int, spec_json: dict[str, Any], peak: Any) -> None:
    """One of several processes: end queued trials and advance the sweep, at random, until it ends."""
    rng = random.Random(seed)
    spec = SweepSpec.model_validate(spec_json)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if get_job_status(sweep_id).finished:
            return
        waiting = children(sweep_id, JobStatus.QUEUED, JobStatus.RUNNING)
        with peak.get_lock():
            peak.value = max(peak.value, len(waiting))
        queued = children(sweep_id, JobStatus.QUEUED)
        if queued and rng.random() < 0.7:
            status = rng.choice([JobStatus.SUCCEEDED] * 3 + [JobStatus.PRUNED, JobStatus.FAILED])
            end_trial(rng.choice(queued), status, rng.random(), worker=f"racer-{seed}")
        else:
            advance_sweep(sweep_id)
            time.sleep(0.05)
    raise AssertionError(f"sweep {sweep_id} did not end: {spec.trials} trials")


def get_job_status(job_id: str) -> JobStatus:
    with session_scope() as session:
        return get_job(session, job_id).status


@pytest.mark.slow
def test_racing_asks_make_each_trial_once(queue_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    spec = lenet_sweep(trials=6, parallel=3)
    sweep_id = submit_sweep(spec)
    context = multiprocessing.get_context("spawn")
    peak = context.Value("i", 0)
    racers = [
        context.Process(target=race, args=(sweep_id, seed, spec.model_dump(mode="json"), peak))
        for seed in range(3)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=180)
    assert [racer.exitcode for racer in racers] == [0, 0, 0]
    assert get_job_status(sweep_id) == JobStatus.SUCCEEDED
    assert_consistent(sweep_id, spec)
    assert peak.value <= spec.parallel


def test_the_recipe_is_trial_0_and_parallel_trials_are_queued(queue_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    spec = lenet_sweep(trials=5, parallel=2)
    sweep_id = submit_sweep(spec)
    with session_scope() as session:
        sweep = get_job(session, sweep_id)
        assert (sweep.kind, sweep.status, sweep.heartbeat_at) == ("sweep", JobStatus.RUNNING, None)
        first, second = (get_job(session, job_id) for job_id in children(sweep_id))
        assert first.id == trial_job_id(sweep_id, 0) and first.sent_at is not None
        assert (first.spec["lr"], first.spec["momentum"]) == (0.1, 0.95)  # lenet's recipe: SGD's defaults
        assert first.kind == "train" and second.status == JobStatus.QUEUED
        assert second.spec["lr"] != 0.1 and 0.8 <= second.spec["momentum"] <= 0.99
    assert end_trial(trial_job_id(sweep_id, 0), JobStatus.SUCCEEDED, 0.9)
    assert len(children(sweep_id)) == 3  # trial 0's end asked for trial 2
    assert {t.number: t.state.name for t in study_trials(sweep_id)} == {
        0: "COMPLETE",
        1: "RUNNING",
        2: "RUNNING",
    }


def test_a_grid_sweep_visits_every_point_once(queue_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    train = {"model": "lenet", "dataset": "mnist", "data_root": "/nowhere", "epochs": 3, "device": "cpu"}
    params = [parse_param("batch_size=choice:32,64"), parse_param("lr=choice:0.01,0.1,0.5")]
    spec = build_sweep(TrainSpec.model_validate(train), train, params, [], {"sampler": "grid", "parallel": 3})
    assert spec.trials == 2 * 3 + 1
    sweep_id = submit_sweep(spec)
    while queued := children(sweep_id, JobStatus.QUEUED):
        end_trial(queued[0], JobStatus.SUCCEEDED, 0.5)
    assert get_job_status(sweep_id) == JobStatus.SUCCEEDED
    with session_scope() as session:
        points = [
            (job.spec["batch_size"], job.spec["lr"])
            for job in session.scalars(select(Job).where(Job.parent_id == sweep_id).order_by(Job.id))
        ]
    assert points[0] == (64, 0.1)  # trial 0, the recipe, is also a point of the grid
    assert sorted(points[1:]) == [(b, lr) for b in (32, 64) for lr in (0.01, 0.1, 0.5)]
    assert_consistent(sweep_id, spec)


def test_a_trial_asked_for_by_a_process_that_died_gets_its_job(queue_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    from cnnq.sweeps.study import load_study

    spec = lenet_sweep(trials=4, parallel=2)
    sweep_id = submit_sweep(spec)
    # A process took the lease, asked the study for a trial, and died before recording its job.
    with session_scope() as session:
        session.execute(
            update(Sweep)
            .where(Sweep.job_id == sweep_id)
            .values(leased_by="dead", leased_at=utcnow() - timedelta(seconds=2 * LEASE_SECONDS))
        )
    orphan = load_study(sweep_id, spec).ask()
    assert orphan.number == 2 and len(children(sweep_id)) == 2

    assert end_trial(trial_job_id(sweep_id, 0), JobStatus.SUCCEEDED)  # its advance takes the stale lease
    assert children(sweep_id) == [trial_job_id(sweep_id, n) for n in range(3)]
    with session_scope() as session:
        adopted = get_job(session, trial_job_id(sweep_id, 2))
        assert adopted.status == JobStatus.QUEUED and 1e-3 <= adopted.spec["lr"] <= 0.5
        assert session.scalar(select(Sweep.leased_by).where(Sweep.job_id == sweep_id)) is None


def test_a_requeued_trial_keeps_its_study_trial(queue_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    spec = lenet_sweep(trials=3, parallel=2)
    sweep_id = submit_sweep(spec)
    trial = trial_job_id(sweep_id, 1)
    claim = claim_job(trial, "w1")
    assert isinstance(claim, Claim)
    give_back(trial, claim.token, "re-queued: its worker is stopping", spend=False)
    advance_sweep(sweep_id)
    assert len(children(sweep_id)) == 2  # no new trial in its place
    assert [t.state.name for t in study_trials(sweep_id)] == ["RUNNING", "RUNNING"]
    assert end_trial(trial, JobStatus.PRUNED, 0.2, worker="w2")
    assert [t.state.name for t in study_trials(sweep_id)][1] == "PRUNED"
    for number in (0, 2):
        assert end_trial(trial_job_id(sweep_id, number), JobStatus.SUCCEEDED, 0.5 + number / 10)
    with session_scope() as session:
        sweep = get_job(session, sweep_id)
        assert sweep.status == JobStatus.SUCCEEDED
        assert (sweep.result["best_trial"], sweep.result["best_value"]) == (2, 0.7)
    assert_consistent(sweep_id, spec)


def test_cancelling_a_sweep_cancels_its_trials_and_fails_their_study_trials(
    queue_env: dict[str, str],
) -> None:  # type: ignore[no-untyped-def]
    spec = lenet_sweep(trials=6, parallel=3)
    sweep_id = submit_sweep(spec)
    running = trial_job_id(sweep_id, 0)
    claim = claim_job(running, "w1")
    assert isinstance(claim, Claim)
    assert cancel_job(sweep_id) == JobStatus.RUNNING  # until its running trial has stopped
    assert children(sweep_id, JobStatus.QUEUED) == []
    assert get_job_status(trial_job_id(sweep_id, 1)) == JobStatus.CANCELLED
    finish_claim(running, claim.token, target=JobStatus.CANCELLED, message="cancelled on request")
    assert get_job_status(sweep_id) == JobStatus.CANCELLED
    assert len(children(sweep_id)) == 3  # nothing asked after the cancel
    assert {t.state.name for t in study_trials(sweep_id)} == {"FAIL"}


def test_a_trial_that_ends_before_it_runs_advances_its_sweep_at_once(
    queue_env: dict[str, str],
) -> None:  # type: ignore[no-untyped-def]
    from cnnq.settings import get_settings

    spec = lenet_sweep(trials=5, parallel=2)
    sweep_id = submit_sweep(spec)
    out_of_attempts, cancelled = trial_job_id(sweep_id, 0), trial_job_id(sweep_id, 1)
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id == out_of_attempts).values(attempts=get_settings().max_attempts)
        )
        session.execute(update(Job).where(Job.id == cancelled).values(cancel_requested=True))
    assert claim_job(out_of_attempts, "w1") == JobStatus.FAILED
    assert len(children(sweep_id)) == 3  # the claim told the study and asked, no top-up needed
    assert claim_job(cancelled, "w1") == JobStatus.CANCELLED
    assert len(children(sweep_id)) == 4
    assert cancel_job(trial_job_id(sweep_id, 2)) == JobStatus.CANCELLED  # one trial, cancelled by hand
    assert len(children(sweep_id)) == 5
    assert [t.state.name for t in study_trials(sweep_id)] == ["FAIL", "FAIL", "FAIL", "RUNNING", "RUNNING"]


def test_the_lease_of_a_process_that_died_holding_it_is_free_at_once(
    queue_env: dict[str, str],
) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    from cnnq.sweeps.trials import _machine

    spec = lenet_sweep(trials=4, parallel=1)
    sweep_id = submit_sweep(spec)
    gone = subprocess.Popen(["true"])
    gone.wait()

    def hold(pid: int) -> None:
        with session_scope() as session:
            session.execute(
                update(Sweep)
                .where(Sweep.job_id == sweep_id)
                .values(leased_by=f"{_machine()}:{pid}:0", leased_at=utcnow())
            )

    hold(os.getppid())  # a live process of this machine holds the lease: the sweep waits for it
    assert advance_sweep(sweep_id) == []
    hold(gone.pid)  # it died holding it: the next advance takes the lease over
    assert end_trial(trial_job_id(sweep_id, 0), JobStatus.SUCCEEDED)
    assert children(sweep_id) == [trial_job_id(sweep_id, n) for n in range(2)]
    with session_scope() as session:
        assert session.scalar(select(Sweep.leased_by).where(Sweep.job_id == sweep_id)) is None


def test_the_recovery_pass_tops_up_a_sweep_nobody_advanced(
    queue_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from cnnq.db.jobs import transition

    spec = lenet_sweep(trials=3, parallel=1)
    sweep_id = submit_sweep(spec)
    assert Recovery().run().trials == []
    # Trial 0 ends, and the process that ended it dies before advancing the sweep.
    first = trial_job_id(sweep_id, 0)
    with session_scope() as session:
        transition(session, first, JobStatus.RUNNING, heartbeat_at=None)
        transition(session, first, JobStatus.SUCCEEDED)
    monkeypatch.setattr("cnnq.sweeps.trials.TOP_UP_AFTER_SECONDS", 0.0)
    assert Recovery().run().trials == [trial_job_id(sweep_id, 1)]


def test_optuna_tables_live_beside_cnnqs_outside_its_migrations(
    queue_env: dict[str, str], database_url: str
) -> None:  # type: ignore[no-untyped-def]
    submit_sweep(lenet_sweep())
    upgrade_database(database_url)
    assert current_revision(database_url) == head_revision()
    with get_engine(database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": owned_by_cnnq})
        assert compare_metadata(context, metadata) == []
        tables = connection.dialect.get_table_names(connection)
    assert {"studies", "trials", "trial_intermediate_values"} <= set(tables)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(SweepTrial)) == 2

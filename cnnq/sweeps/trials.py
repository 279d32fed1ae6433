"""A sweep's trials: asking its study for them, creating each one's job exactly once, telling the study how
each ended, and ending the sweep. There is no controller process.

`advance_sweep` runs wherever a sweep may have moved: in the process that ended one of its trials
(`cnnq.lifecycle.claim.finish_claim`: a worker's job process, or the worker itself after a kill; or
`claim_job`, for a trial that ends as it is claimed, cancelled or out of attempts), in `cnnq sweep` right
after recording it, in `cnnq cancel` (of the sweep or of one queued trial), and in every worker's recovery
pass for a sweep that looks stuck (`top_up_sweeps`: a trial ended that the study was not told of, or there
is room and no trial waits, as after every worker died).

Exactly once:
- One process at a time advances a sweep: the holder of its lease (`sweeps.leased_by`, taken by a
  conditional UPDATE on the database's clock, free again after `LEASE_SECONDS`). The holder's name says
  which machine and process holds it: a process on the same machine takes over at once the lease of a
  holder that is dead (a job process killed mid-advance, taken over by its own worker); a holder on
  another machine holds the sweep up `LEASE_SECONDS` at most.
- A trial's job is inserted in the transaction that first locks the sweep's job row (a conditional UPDATE
  that only a running, uncancelled sweep matches; `request_cancel` takes the same lock first), and only if
  its (sweep, number) row is missing and the sweep has fewer rows than `--trials`: a repeated or
  concurrent ask never makes a second job, and a cancelled sweep never gets a new one.
- The study's trial is asked for before its job exists. An asker that dies in between leaves a RUNNING
  study trial without a job; the next advance gives it its job (or, past the budget, fails it), so no
  study trial stays RUNNING for ever.
- A trial's end is told to the study once (`sweep_trials.told`): SUCCEEDED is COMPLETE with the best value
  of the metric over its epochs, PRUNED is PRUNED, FAILED and CANCELLED are FAIL. A trial re-queued after
  its worker died keeps its study trial RUNNING and resumes from its checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cnnq.db.clock import db_ago, db_now, read_db_now
from cnnq.db.jobs import create_job, request_cancel, transition
from cnnq.db.orm import Job, Sweep, SweepTrial
from cnnq.db.records import append_log
from cnnq.db.session import session_scope
from cnnq.db.status import FINISHED, IllegalTransition, JobStatus
from cnnq.errors import validation_message
from cnnq.jobs.spec import TrainSpec
from cnnq.lifecycle.outbox import send_each
from cnnq.sweeps.report import TrialSummary, summarize, trial_value, values_text
from cnnq.sweeps.spec import SWEEP_KIND, SweepSpec, trial_spec

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
"""A lease older than this is free again: far longer than an advance takes (well under a second)."""
WAIT_FOR_LEASE_SECONDS = 10.0
"""How long the process that ended a trial waits for another advancer to finish, so that its trial's end is
seen; past that, the recovery pass's top-up sees it."""
TOP_UP_AFTER_SECONDS = 15.0
"""The top-up leaves a sweep alone this long after it started or a trial of it ended: the process that
ended the trial advances it (and the heartbeat thread, which also beats for a running job, stays quick)."""


def trial_job_id(sweep_id: str, number: int) -> str:
    return f"{sweep_id}.{number:03d}"


def advance_sweep(sweep_id: str, *, wait: float = 0.0) -> list[str]:
    """Bring sweep `sweep_id` up to date: tell the study of trials that ended, ask it for new ones while
    there is room, end the sweep once all its trials have. Returns the ids of the trial jobs it sent.
    A no-op for a job that is not a running sweep, and while another process holds the sweep's lease
    (waited for up to `wait` seconds)."""
    with session_scope() as session:
        job = session.get(Job, sweep_id)
        if job is None or job.kind != SWEEP_KIND or job.status.finished:
            return []
    holder = _take_lease(sweep_id, wait)
    if holder is None:
        return []
    try:
        return _advance(sweep_id)
    finally:
        _release_lease(sweep_id, holder)


def top_up_sweeps() -> list[str]:
    """The recovery pass's step: advance each running sweep that looks stuck. Returns the trial jobs sent.
    Costs one query when no sweep runs."""
    with session_scope() as session:
        running = session.scalars(
            select(Job.id).where(Job.kind == SWEEP_KIND, Job.status == JobStatus.RUNNING)
        ).all()
        stuck = [sweep_id for sweep_id in running if _needs_advance(session, sweep_id)]
    sent = []
    for sweep_id in stuck:
        try:
            sent += advance_sweep(sweep_id)
        except Exception as error:
            log.warning(
                "sweep %s: could not advance it (%s); the next recovery pass tries again", sweep_id, error
            )
    return sent


def send_trials(sweep_id: str) -> list[str]:
    """Send the messages of the sweep's queued trials that have none yet (the outbox's conditional stamp
    keeps a trial from being sent twice)."""
    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.queue, Job.priority)
            .where(Job.parent_id == sweep_id, Job.status == JobStatus.QUEUED, Job.sent_at.is_(None))
            .order_by(Job.id)
        ).all()
    return send_each(rows, Job.sent_at.is_(None))


@dataclass(frozen=True)
class TrialRow:
    number: int
    job_id: str
    status: JobStatus
    told: bool


def trial_rows(session: Session, sweep_id: str) -> list[TrialRow]:
    rows = session.execute(
        select(SweepTrial.number, SweepTrial.job_id, Job.status, SweepTrial.told)
        .join(Job, Job.id == SweepTrial.job_id)
        .where(SweepTrial.sweep_id == sweep_id)
        .order_by(SweepTrial.number)
    ).all()
    return [TrialRow(*row) for row in rows]


# --- the lease -----------------------------------------------------------------------------------------


def _take_lease(sweep_id: str, wait: float) -> str | None:
    holder = f"{_machine()}:{os.getpid()}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + wait
    while True:
        with session_scope() as session:
            free = Sweep.leased_by.is_(None) | (Sweep.leased_at < db_ago(LEASE_SECONDS))
            current = session.scalar(select(Sweep.leased_by).where(Sweep.job_id == sweep_id))
            dead = current is not None and _holder_dead(current)
            if dead:
                free = free | (Sweep.leased_by == current)
            taken = session.execute(
                update(Sweep)
                .where(Sweep.job_id == sweep_id, free)
                .values(leased_by=holder, leased_at=db_now())
                .execution_options(synchronize_session=False)
            ).rowcount
        if taken:
            if dead:
                log.info("sweep %s: took over the lease of %s, which died holding it", sweep_id, current)
            return holder
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


@functools.cache
def _machine() -> str:
    """This machine and process namespace, in 16 characters: a pid means the same process only within it
    (containers on one host may share a hostname, never a pid namespace and boot)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: no process is ever judged dead, leases lapse after LEASE_SECONDS
        return "unknown"
    return hashlib.sha1(f"{socket.gethostname()}|{boot}|{pid_namespace}".encode()).hexdigest()[:16]


def _holder_dead(holder: str) -> bool:
    """Whether the lease holder `holder` is a process of this machine that no longer runs (a zombie,
    killed and not yet reaped, is dead too). Unsure (another machine, an old name): not dead."""
    machine, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if machine == "unknown" or machine != _machine() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _release_lease(sweep_id: str, holder: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Sweep)
            .where(Sweep.job_id == sweep_id, Sweep.leased_by == holder)
            .values(leased_by=None, leased_at=None)
            .execution_options(synchronize_session=False)
        )


# --- one advance, under the lease ----------------------------------------------------------------------


def _advance(sweep_id: str) -> list[str]:
    """Tell, ask, send the new trials' messages at once (a worker waits for them), then settle."""
    from cnnq.sweeps.study import load_study

    with session_scope() as session:
        sweep = session.get(Job, sweep_id)
        assert sweep is not None
        spec = SweepSpec.model_validate(sweep.spec)
        if sweep.cancel_requested:  # a trial created while the cancel was listing the others
            for row in trial_rows(session, sweep_id):
                if row.status == JobStatus.QUEUED:
                    request_cancel(session, row.job_id)
    study = load_study(sweep_id, spec)
    _tell_ended(study, spec, sweep_id)
    _ask(study, spec, sweep_id)
    sent = send_trials(sweep_id)
    settle(spec, sweep_id)
    return sent


def _tell_ended(study: optuna.Study, spec: SweepSpec, sweep_id: str) -> None:
    """Tell the study how each trial that ended since the last advance ended."""
    from optuna.trial import TrialState

    with session_scope() as session:
        ended = [row for row in trial_rows(session, sweep_id) if row.status.finished and not row.told]
        values = {row.job_id: trial_value(session, row.job_id, spec) for row in ended}
    for row in ended:
        value = values[row.job_id]
        if row.status == JobStatus.SUCCEEDED and value is not None:
            study.tell(row.number, value, state=TrialState.COMPLETE, skip_if_finished=True)
            how = f"{spec.metric} {value:.4f}"
        elif row.status == JobStatus.PRUNED:
            study.tell(row.number, state=TrialState.PRUNED, skip_if_finished=True)
            how = "pruned"
        else:
            study.tell(row.number, state=TrialState.FAIL, skip_if_finished=True)
            how = f"{row.status.lower()}: a failed trial for the study"
        with session_scope() as session:
            session.execute(
                update(SweepTrial)
                .where(SweepTrial.sweep_id == sweep_id, SweepTrial.number == row.number)
                .values(told=True)
                .execution_options(synchronize_session=False)
            )
            append_log(session, sweep_id, [f"trial {row.number} ({row.job_id}) ended {row.status}: {how}"])


def _ask(study: optuna.Study, spec: SweepSpec, sweep_id: str) -> None:
    """Give every study trial left RUNNING without a job its job, then ask for new trials while the sweep
    has room: fewer than `--parallel` trials waiting or running, fewer than `--trials` in all."""
    import optuna
    from optuna.trial import TrialState

    from cnnq.sweeps.study import ask, draw

    with session_scope() as session:
        cancelled = session.scalar(select(Job.cancel_requested).where(Job.id == sweep_id))
        rows = trial_rows(session, sweep_id)
    known = {row.number for row in rows}
    trials = study.get_trials(deepcopy=False)
    for orphan in (t for t in trials if t.state == TrialState.RUNNING and t.number not in known):
        log.warning("sweep %s: trial %d was asked for but has no job; giving it one", sweep_id, orphan.number)
        trial = optuna.trial.Trial(study, orphan._trial_id)
        if _create_trial(study, spec, sweep_id, trial, draw(trial, spec)) == "created":
            rows.append(
                TrialRow(orphan.number, trial_job_id(sweep_id, orphan.number), JobStatus.QUEUED, False)
            )
    if cancelled:
        return
    waiting = sum(not row.status.finished for row in rows)
    room = min(spec.parallel - waiting, spec.trials - len(rows))
    for asked in range(max(room, 0)):
        trial = ask(study, spec, len(trials) + asked)
        if _create_trial(study, spec, sweep_id, trial, draw(trial, spec)) != "created":
            break


def _create_trial(
    study: optuna.Study, spec: SweepSpec, sweep_id: str, trial: optuna.trial.Trial, values: dict[str, Any]
) -> str:
    """Insert the job of study trial `trial`, once: `created`, `exists` (a repeated ask), or `refused` (the
    sweep is cancelled, ended or full; the study trial is failed, so it never stays RUNNING)."""
    from optuna.trial import TrialState

    from cnnq.sweeps.study import teller

    number = trial.number
    options = trial_spec(spec, values)
    try:
        train: dict[str, Any] = TrainSpec.model_validate(options).model_dump(mode="json")
        invalid = None
    except ValidationError as error:  # a combination the checks at submit could not foresee
        train, invalid = options, validation_message(error)
    with session_scope() as session:
        locked = session.execute(
            update(Job)
            .where(Job.id == sweep_id, Job.status == JobStatus.RUNNING, Job.cancel_requested.is_(False))
            .values(progress=Job.progress)
            .execution_options(synchronize_session=False)
        ).rowcount
        existing = session.get(SweepTrial, (sweep_id, number)) if locked else None
        count = session.scalar(select(func.count()).where(SweepTrial.sweep_id == sweep_id)) or 0
        if existing is None and (not locked or count >= spec.trials):
            outcome = "refused"
        elif existing is not None:
            outcome = "exists"
        else:
            sweep = session.get(Job, sweep_id)
            assert sweep is not None
            shown = values_text(values)
            job = create_job(
                session,
                kind="train",
                spec=train,
                queue=sweep.queue,
                priority=sweep.priority,
                parent_id=sweep_id,
                job_id=trial_job_id(sweep_id, number),
                message=f"trial {number} of {sweep_id}: {shown}",
            )
            session.add(
                SweepTrial(sweep_id=sweep_id, number=number, job_id=job.id, study_trial_id=trial._trial_id)
            )
            session.flush()
            if invalid is not None:
                transition(
                    session, job.id, JobStatus.FAILED, error_type="InvalidTrial", error_message=invalid
                )
            append_log(session, sweep_id, [f"trial {number} ({job.id}): {shown}"])
            outcome = "created"
    if outcome == "refused":
        study.sampler = teller()
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return outcome


def settle(spec: SweepSpec, sweep_id: str) -> None:
    """The sweep's progress and message; its end once every trial it will have has ended and been told
    (its result: the best trial). `benchmarks/dashboard_load.py` ends its generated sweep with it."""
    with session_scope() as session:
        sweep = session.get(Job, sweep_id)
        assert sweep is not None
        rows = trial_rows(session, sweep_id)
        counts = Counter(row.status for row in rows)
        best = summarize(session, sweep).best
        ended = sum(counts[s] for s in FINISHED)
        message = _summary(spec, counts, best)
        done = all(row.status.finished and row.told for row in rows) and (
            sweep.cancel_requested or len(rows) >= spec.trials
        )
        try:
            if not done:
                session.execute(
                    update(Job)
                    .where(Job.id == sweep_id, Job.status == JobStatus.RUNNING)
                    .values(progress=ended / spec.trials, message=message)
                    .execution_options(synchronize_session=False)
                )
                return
            if sweep.cancel_requested:
                transition(session, sweep_id, JobStatus.CANCELLED, message=message)
            elif best is not None:
                result = {
                    "best_trial": best.number,
                    "best_job": best.job_id,
                    "best_value": best.value,
                    "metric": spec.metric,
                    "trials": {str(status): n for status, n in counts.items()},
                }
                transition(session, sweep_id, JobStatus.SUCCEEDED, message=message, result=result)
            else:
                transition(
                    session,
                    sweep_id,
                    JobStatus.FAILED,
                    message=message,
                    error_type="NoTrialSucceeded",
                    error_message=f"none of its {len(rows)} trials succeeded; `cnnq sweep show {sweep_id}` "
                    "lists them",
                )
        except IllegalTransition:
            return
        append_log(session, sweep_id, [f"ended: {message}"])


def _summary(spec: SweepSpec, counts: Counter[JobStatus], best: TrialSummary | None) -> str:
    ended = sum(counts[s] for s in FINISHED)
    parts = [f"{counts[s]} {s.lower()}" for s in JobStatus if counts[s]]
    line = f"{ended} of {spec.trials} trials ended" + (f" ({', '.join(parts)})" if parts else "")
    if best is not None:
        line += f"; best {spec.metric} {best.value:.4f} (trial {best.number})"
    return line


def _needs_advance(session: Session, sweep_id: str) -> bool:
    """Whether a sweep looks stuck: nothing happened to it for `TOP_UP_AFTER_SECONDS`, and a trial ended
    that the study was not told of, or a cancel is to be finished, or it has room and no trial waiting."""
    sweep = session.get(Job, sweep_id)
    if sweep is None:
        return False
    last_end = session.scalar(
        select(func.max(Job.finished_at))
        .join(SweepTrial, SweepTrial.job_id == Job.id)
        .where(SweepTrial.sweep_id == sweep_id)
    )
    quiet_since = max(t for t in (sweep.started_at, last_end) if t is not None)
    if (read_db_now(session) - quiet_since).total_seconds() < TOP_UP_AFTER_SECONDS:
        return False
    rows = trial_rows(session, sweep_id)
    if any(row.status.finished and not row.told for row in rows):
        return True
    unfinished = [row for row in rows if not row.status.finished]
    if sweep.cancel_requested:
        return not unfinished or any(row.status == JobStatus.QUEUED for row in unfinished)
    spec = SweepSpec.model_validate(sweep.spec)
    queued = any(row.status == JobStatus.QUEUED for row in unfinished)
    return not queued and len(unfinished) < spec.parallel and len(rows) < spec.trials

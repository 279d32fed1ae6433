"""Timestamps at each hop of a job's start, for `benchmarks/submit_latency.py --profile`.

`trace_submit()` wraps the steps of `submit_job` in the submitting process. Run as a script, this is a
cnnq worker process (`cnnq.workers.process`, unchanged) with the task, the hand-over to the job process,
the claim and its SQL statements wrapped. The job process is spawned, and a spawned child runs its
parent's main script first (as `__mp_main__`), so the wrappers are installed in the job process too.
Each hop appends "JOB EVENT TIME" (TIME: `time.time()`) to the file named by `SUBMIT_LATENCY_TRACE`.

    SUBMIT_LATENCY_TRACE=/tmp/t python benchmarks/latency_trace.py --name N --queues cpu,default
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

TRACE_ENV = "SUBMIT_LATENCY_TRACE"

_claiming: list[str] = []
"""The job whose claim the job process is taking (its SQL statements are traced)."""


def mark(job_id: str, event: str) -> None:
    with open(os.environ[TRACE_ENV], "a") as trace:
        trace.write(f"{job_id} {event} {time.time()!r}\n")


def _after(function: Callable[..., Any], event: str, job_of: Callable[..., str]) -> Callable[..., Any]:
    """`function`, marking `event` for the job `job_of(*args)` when it returns."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        mark(job_of(result, *args), event)
        return result

    return wrapper


def trace_submit() -> None:
    """Mark, in this process, when `submit_job` starts, has pinged the broker, has committed the row (it
    sends the message right after) and returns. Its job has no id before it returns: the marks before
    that are "pending" ones, for `submit.returned` to claim."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from cnnq.lifecycle import submit

    inside: list[bool] = []
    submit_job = submit.submit_job

    @functools.wraps(submit_job)
    def traced_submit(*args: Any, **kwargs: Any) -> str:
        mark("pending", "submit.start")
        inside.append(True)
        try:
            job_id = submit_job(*args, **kwargs)
        finally:
            inside.clear()
        mark(job_id, "submit.returned")
        return job_id

    def committed(_session: Session) -> None:
        if inside:
            mark("pending", "submit.committed")

    event.listen(Session, "after_commit", committed)
    submit.broker_problem = _after(submit.broker_problem, "submit.pinged", lambda *_: "pending")
    submit.submit_job = traced_submit


def _trace_worker() -> None:
    """The worker's hops: Celery hands over the message, the task starts, the job id is sent down the
    pipe."""
    from celery.signals import task_received

    from cnnq.workers import job_process, task

    @task_received.connect(weak=False)
    def _received(request: Any, **_: Any) -> None:
        mark(str(request.args[0]), "worker.received")

    run_job_task = task.run_job_task

    @functools.wraps(run_job_task)
    def traced_task(job_id: str) -> None:
        mark(job_id, "worker.task")
        run_job_task(job_id)

    run = job_process.JobProcess.run

    @functools.wraps(run)
    def traced_run(self: job_process.JobProcess, job_id: str) -> job_process.JobProcess:
        mark(job_id, "worker.piping")
        return run(self, job_id)

    task.run_job_task = traced_task
    job_process.JobProcess.run = traced_run  # type: ignore[method-assign]


def _trace_job_process() -> None:
    """The job process's hops: the job id arrives, each SQL statement of the claim, the claim is held."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from cnnq.lifecycle import claim

    execute_job = claim.execute_job
    claim_job = claim.claim_job

    @functools.wraps(execute_job)
    def traced_execute(job_id: str, **kwargs: Any) -> Any:
        mark(job_id, "process.received")
        return execute_job(job_id, **kwargs)

    @functools.wraps(claim_job)
    def traced_claim(job_id: str, worker: str) -> Any:
        _claiming.append(job_id)
        try:
            return claim_job(job_id, worker)
        finally:
            _claiming.clear()
            mark(job_id, "process.claimed")

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _claiming:
            mark(_claiming[0], f"sql.{statement.split(None, 1)[0].lower()}.start")

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _claiming:
            mark(_claiming[0], f"sql.{statement.split(None, 1)[0].lower()}.end")

    def commit(_conn: Any) -> None:
        if _claiming:
            mark(_claiming[0], "sql.commit.start")

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    event.listen(Engine, "commit", commit)
    claim.execute_job = traced_execute
    claim.claim_job = traced_claim


if __name__ == "__main__":
    _trace_worker()
    from cnnq.workers.process import main

    main()
elif __name__ == "__mp_main__":
    _trace_job_process()

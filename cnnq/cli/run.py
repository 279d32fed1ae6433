"""`cnnq run`: a job in this process, for debugging, with the same options as `cnnq submit`."""

from __future__ import annotations

import typer

from cnnq.cli.jobs import full_object, print_job
from cnnq.cli.output import print_json
from cnnq.cli.spec_options import AnySpec, Placement, spec_commands
from cnnq.db.status import JobStatus


def _execute(spec: AnySpec, placement: Placement) -> None:
    from cnnq.db.jobs import create_job, get_job
    from cnnq.db.migrate import upgrade_database
    from cnnq.db.session import session_scope
    from cnnq.lifecycle.claim import default_worker_name, execute_job
    from cnnq.lifecycle.queues import LOCAL_QUEUE
    from cnnq.workers.heartbeat import Heartbeat

    upgrade_database()
    with session_scope() as session:
        job_id = create_job(
            session,
            kind=spec.kind,
            spec=spec.model_dump(mode="json"),
            queue=LOCAL_QUEUE,
            priority=placement.priority,
        ).id
    worker = default_worker_name()
    heartbeat = Heartbeat(worker, registered=False, recover=False)
    heartbeat.job_id = job_id
    heartbeat.start()
    try:
        status = execute_job(job_id, worker=worker)
    finally:
        heartbeat.stop()
    with session_scope() as session:
        job = get_job(session, job_id)
        if placement.as_json:
            print_json(full_object(session, job))
        else:
            print_job(session, job)
    if status != JobStatus.SUCCEEDED:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(spec_commands(_execute, "Run a job in this process (for debugging)."), name="run")

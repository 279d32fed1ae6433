"""`cnnq submit train|eval|infer`: validate a spec, record the job and queue it."""

from __future__ import annotations

import typer

from cnnq.cli.jobs import full_object, wait_for
from cnnq.cli.output import console, print_json
from cnnq.cli.spec_options import AnySpec, Placement, spec_commands


def _execute(spec: AnySpec, placement: Placement) -> None:
    from cnnq.db.jobs import get_job
    from cnnq.db.migrate import upgrade_database
    from cnnq.db.outage import refused_while_out
    from cnnq.db.session import connection_scope
    from cnnq.lifecycle.submit import Placement as Where
    from cnnq.lifecycle.submit import submit_job

    with refused_while_out():
        upgrade_database()
    job_id = submit_job(spec, Where(queue=placement.queue, priority=placement.priority))
    if placement.wait:
        code = wait_for(job_id, as_json=placement.as_json)
        if code:
            raise typer.Exit(code)
        return
    with connection_scope() as connection:
        job = get_job(connection, job_id)
        if placement.as_json:
            print_json(full_object(connection, job))
        else:
            what = f" ({job.message})" if job.message else ""
            console.print(
                f"queued {job.id} on {job.queue}{what}; follow it with `cnnq wait {job.id}`", highlight=False
            )


def register(app: typer.Typer) -> None:
    app.add_typer(spec_commands(_execute, "Queue a job for the workers."), name="submit")

"""Recording a sweep: its Optuna study, its job row, and its first trials, queued.

The study comes first, then the sweep's job (RUNNING from the start, with no heartbeat: it never runs
itself, so the recovery pass never re-queues it, and no worker is sent it), then the first trials. A
`cnnq sweep` that dies after the job row leaves a sweep with room and no trial waiting: the recovery pass
tops it up, asking for its trials (`cnnq.sweeps.trials.top_up_sweeps`).
"""

from __future__ import annotations

from cnnq.db.jobs import create_job, new_job_id, transition
from cnnq.db.orm import Sweep
from cnnq.db.outage import refused_while_out
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.lifecycle.broker import require_broker
from cnnq.lifecycle.queues import queue_for
from cnnq.sweeps.spec import SWEEP_KIND, SweepSpec
from cnnq.sweeps.trials import advance_sweep


def submit_sweep(spec: SweepSpec, queue: str | None = None, priority: int = 0) -> str:
    """Record sweep `spec` and queue its first trials (up to `--parallel`); returns the sweep's job id."""
    from cnnq.sweeps.study import create_study

    queue = queue_for(str(spec.train.get("device", "auto")), queue)
    require_broker()
    sweep_id = new_job_id(SWEEP_KIND)
    with refused_while_out():
        create_study(sweep_id, spec)
        with session_scope() as session:
            create_job(
                session,
                kind=SWEEP_KIND,
                spec=spec.model_dump(mode="json"),
                queue=queue,
                priority=priority,
                job_id=sweep_id,
            )
            transition(
                session,
                sweep_id,
                JobStatus.RUNNING,
                heartbeat_at=None,
                message=f"0 of {spec.trials} trials ended",
            )
            session.add(Sweep(job_id=sweep_id))
    advance_sweep(sweep_id)
    return sweep_id

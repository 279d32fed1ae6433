"""The Celery application: JSON only, late acks, one job at a time per worker process, priorities.

Workers use the solo pool: the task itself starts a fresh spawned process per job
(`cnnq.workers.task`), so CUDA is only ever touched in a process that exits when the job ends.
"""

from __future__ import annotations

from celery import Celery

from cnnq.settings import get_settings
from cnnq.workers.queues import DEFAULT_QUEUE, PRIORITY_SEPARATOR, PRIORITY_STEPS

RUN_JOB_TASK = "cnnq.run_job"


def make_app() -> Celery:
    settings = get_settings()
    celery = Celery("cnnq", broker=settings.broker_url, set_as_current=False)
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            "priority_steps": PRIORITY_STEPS,
            "sep": PRIORITY_SEPARATOR,
            "queue_order_strategy": "priority",
        },
    )
    from cnnq.workers.task import run_job_task

    celery.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True)(run_job_task)
    return celery


_apps: dict[str, Celery] = {}


def get_app() -> Celery:
    """The app for the configured broker (made again when the settings change, as in tests)."""
    url = get_settings().broker_url
    if url not in _apps:
        _apps[url] = make_app()
    return _apps[url]

"""The broker side of the lifecycle: the Celery app's settings, sending a job's message, and reading Redis
directly (is it there, how many messages wait, which jobs have a message waiting).

A message carries only a job id; the SQL row is the truth. Sending is always safe to repeat: a worker that
gets a message for a job it cannot claim does nothing.

The app here only sends. The worker process registers the task that runs jobs on it
(`cnnq.workers.process`), so sending never imports the code that runs jobs.
"""

from __future__ import annotations

import json

import redis
from celery import Celery

from cnnq.lifecycle.queues import (
    DEFAULT_QUEUE,
    PRIORITY_SEPARATOR,
    PRIORITY_STEPS,
    message_priority,
    priority_keys,
)
from cnnq.settings import get_settings, mask_url

RUN_JOB_TASK = "cnnq.run_job"


def make_app() -> Celery:
    """JSON only, late acks, one job at a time per worker process, priorities, a week's visibility."""
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
        # A worker waits out a Redis outage, however long, and takes work again when it returns.
        broker_connection_max_retries=None,
        broker_connection_timeout=3,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            "priority_steps": PRIORITY_STEPS,
            "sep": PRIORITY_SEPARATOR,
            "queue_order_strategy": "priority",
        },
    )
    return celery


_apps: dict[str, Celery] = {}


def get_app() -> Celery:
    """The app for the configured broker (made again when the settings change, as in tests)."""
    url = get_settings().broker_url
    if url not in _apps:
        _apps[url] = make_app()
    return _apps[url]


def send_message(job_id: str, queue: str, priority: int) -> None:
    """Put job `job_id`'s message on `queue`; raises when the broker cannot take it."""
    get_app().send_task(
        RUN_JOB_TASK,
        args=[job_id],
        queue=queue,
        priority=message_priority(priority),
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0},
    )


def waiting_job_ids(queues: list[str], url: str | None = None) -> set[str]:
    """Jobs whose message waits in one of these queues (not those a worker took, acknowledged or not)."""
    client = redis_client(url)
    pipe = client.pipeline()
    for queue in queues:
        for key in priority_keys(queue):
            pipe.lrange(key, 0, -1)
    waiting: set[str] = set()
    for messages in pipe.execute():
        for raw in messages:
            waiting.add(_job_id_of(raw))
    return waiting


def _job_id_of(raw: bytes) -> str:
    """The job id a kombu message carries, from its headers (`argsrepr` is "['train-abc123']")."""
    try:
        headers = json.loads(raw).get("headers") or {}
    except (ValueError, AttributeError):
        return ""
    return str(headers.get("argsrepr", "")).strip("[]()',\" ")


def redis_client(url: str | None = None, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(
        url or get_settings().broker_url, socket_connect_timeout=timeout, socket_timeout=timeout
    )


def broker_problem(url: str | None = None) -> str | None:
    """None when the broker answers a PING, else one line saying which (masked) URL did not."""
    url = url or get_settings().broker_url
    try:
        redis_client(url).ping()
    except (redis.RedisError, OSError, ValueError) as error:
        return f"the broker {mask_url(url)} does not answer ({type(error).__name__}: {error})"
    return None


def queue_depths(queues: list[str], url: str | None = None) -> dict[str, int]:
    """Messages waiting in each queue, summed over its priority lists."""
    client = redis_client(url)
    pipe = client.pipeline()
    for queue in queues:
        for key in priority_keys(queue):
            pipe.llen(key)
    lengths = pipe.execute()
    steps = len(priority_keys("x"))
    return {queue: sum(lengths[i * steps : (i + 1) * steps]) for i, queue in enumerate(queues)}


def known_queues(url: str | None = None) -> list[str]:
    """Queues that have, or had, messages: the names behind kombu's Redis keys."""
    client = redis_client(url)
    names: set[str] = set()
    for raw in client.scan_iter(count=1000):
        key = raw.decode(errors="replace")
        if key.startswith("_kombu") or key.startswith("unacked") or client.type(raw) != b"list":
            continue
        names.add(key.rsplit(":", 1)[0] if key.rsplit(":", 1)[-1].isdigit() else key)
    return sorted(names)

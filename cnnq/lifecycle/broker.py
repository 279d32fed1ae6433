"""The broker side of the lifecycle: the Celery app's settings, sending a job's message, and reading Redis
directly (is it there, how many messages wait, which jobs have a message waiting).

A message carries only a job id; the SQL row is the truth. Sending is always safe to repeat: a worker that
gets a message for a job it cannot claim does nothing.

The app here is the workers' (`cnnq.workers.process` registers the task that runs jobs on it). Sending
does without Celery: a job's message is small and its form fixed (Celery's task protocol 2 in kombu's
Redis transport), so `send_message` writes it to Redis itself, where `send_task` would have put it.
Importing Celery and kombu to send it would cost `cnnq submit` about 0.2 s of CPU, a quarter of the
command (`benchmarks/cli_latency.py`); a test holds the message equal to the one `send_task` writes.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING

import redis

from cnnq.errors import ServiceUnavailable
from cnnq.lifecycle.queues import (
    DEFAULT_QUEUE,
    PRIORITY_SEPARATOR,
    PRIORITY_STEPS,
    message_priority,
    priority_keys,
)
from cnnq.settings import get_settings, mask_url

if TYPE_CHECKING:
    from celery import Celery

RUN_JOB_TASK = "cnnq.run_job"


def make_app() -> Celery:
    """JSON only, late acks, one job at a time per worker process, priorities, a week's visibility."""
    from celery import Celery

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


def job_message(job_id: str, queue: str, priority: int) -> tuple[str, str]:
    """(the Redis list, the message) of job `job_id` on `queue` at cnnq priority 0..9: what Celery's
    `send_task(RUN_JOB_TASK, args=[job_id], queue=queue)` pushes, the same headers, body and properties."""
    task_id = str(uuid.uuid4())
    step = message_priority(priority)
    body = [[job_id], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    message = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": RUN_JOB_TASK,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": repr([job_id]),
            "kwargsrepr": "{}",
            "origin": f"gen{os.getpid()}@{socket.gethostname()}",
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": None,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": step,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return priority_keys(queue)[PRIORITY_STEPS.index(step)], json.dumps(message)


def send_message(job_id: str, queue: str, priority: int) -> None:
    """Put job `job_id`'s message on `queue`; raises when the broker cannot take it (after two more
    tries, 0.2 s and 0.7 s later, as `send_task`'s retry policy did)."""
    key, message = job_message(job_id, queue, priority)
    for pause in (0.2, 0.5, None):
        try:
            redis_client().lpush(key, message)
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if pause is None:
                raise
            time.sleep(pause)


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
    """A client of the broker's Redis, kept per URL so that its connection is reused: a new one costs
    more round trips than the PING or LLEN it is opened for (3-8 ms of each submit, measured by
    `benchmarks/submit_latency.py`). redis-py reconnects by itself after Redis restarts."""
    return _redis_client(url or get_settings().broker_url, timeout)


@lru_cache(maxsize=8)
def _redis_client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def broker_problem(url: str | None = None) -> str | None:
    """None when the broker answers a PING, else one line saying which (masked) URL did not."""
    url = url or get_settings().broker_url
    try:
        redis_client(url).ping()
    except (redis.RedisError, OSError, ValueError) as error:
        return f"the broker {mask_url(url)} does not answer ({type(error).__name__}: {error})"
    return None


def require_broker() -> None:
    """Refuse to record a job while the broker does not answer: one line naming it, nothing queued."""
    problem = broker_problem()
    if problem is not None:
        raise ServiceUnavailable(
            f"{problem}; nothing was queued. Start one with `cnnq up` or set CNNQ_BROKER_URL"
        )


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

"""Celery's own round trip, for `benchmarks/submit_latency.py`: an empty task on cnnq's Celery app.

The app is `cnnq.lifecycle.broker.make_app()` (JSON, late acks, prefetch 1, priorities, the same
broker), registered and run the way `cnnq.workers.process` runs cnnq's task: solo pool, one process,
no gossip or mingle. The task does nothing but note when it started, in a Redis list of the same
broker, so that the sender can read send -> start without a result backend.

    CNNQ_BROKER_URL=redis://127.0.0.1:6379/N python benchmarks/empty_task.py QUEUE   # the worker
"""

from __future__ import annotations

import logging
import sys
import time
from functools import lru_cache

import redis

from cnnq.lifecycle.broker import make_app, redis_client

EMPTY_TASK = "benchmarks.empty_task"
STARTED_KEY = "benchmarks:empty_task:started"
"""A Redis list of "TAG START" lines, START being the worker's `time.time()` as the task began."""

app = make_app()


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis_client()


@app.task(name=EMPTY_TASK, acks_late=True, reject_on_worker_lost=True)
def empty_task(tag: str) -> None:
    started = time.time()
    _redis().rpush(STARTED_KEY, f"{tag} {started!r}")


def main(queue: str) -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--hostname=empty-task-{queue}@%h",
            f"--queues={queue}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--prefetch-multiplier=1",
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1])

"""Talking to Redis directly: is it there, and how many messages wait in each queue."""

from __future__ import annotations

import redis

from cnnq.settings import get_settings, mask_url
from cnnq.workers.queues import priority_keys


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

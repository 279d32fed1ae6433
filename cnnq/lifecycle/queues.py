"""Queue names and message priorities.

`default` is served by every worker (device auto), `cpu` by CPU workers, `gpu` by every GPU worker and
`gpu.N` by the worker of GPU N. Redis keeps one list per priority step (`queue`, `queue:1` ... `queue:9`);
kombu pops lower steps first, so cnnq's priority 9 ("first") travels as step 0.
"""

from __future__ import annotations

import re

from cnnq.errors import UserError

DEFAULT_QUEUE = "default"
CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
LOCAL_QUEUE = "local"
"""The queue column of a job run in-process by `cnnq run`; no worker listens to it."""

PRIORITY_STEPS = list(range(10))
PRIORITY_SEPARATOR = ":"
MAX_PRIORITY = 9

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def gpu_queue(index: int) -> str:
    return f"{GPU_QUEUE}.{index}"


def queue_for(device: str, requested: str | None) -> str:
    """Where a job goes: the queue the user named, or the one that serves its device."""
    if requested is not None:
        if not _QUEUE_NAME.match(requested) or requested == LOCAL_QUEUE:
            raise UserError(
                f"--queue: {requested!r} is not a queue name; use default, cpu, gpu or gpu.N "
                "(letters, digits, '.', '_' or '-')"
            )
        return requested
    return {"cpu": CPU_QUEUE, "cuda": GPU_QUEUE}.get(device, DEFAULT_QUEUE)


def message_priority(priority: int) -> int:
    """cnnq's 0 (normal) .. 9 (first) as the Redis priority step (0 is popped first)."""
    return MAX_PRIORITY - max(0, min(MAX_PRIORITY, priority))


def priority_keys(queue: str) -> list[str]:
    """The Redis lists that hold one queue's messages, one per priority step."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]

"""`send_message` writes, without Celery, the very message Celery's `send_task` writes, on the same list."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cnnq.lifecycle.broker import RUN_JOB_TASK, get_app, redis_client, send_message
from cnnq.lifecycle.queues import message_priority, priority_keys

PER_MESSAGE = {"id", "root_id", "correlation_id", "delivery_tag", "origin", "reply_to"}
"""Fields that differ between any two messages (fresh ids, the sending process)."""


def _comparable(raw: bytes) -> dict[str, Any]:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for part in ("headers", "properties"):
        message[part] = {k: v for k, v in message[part].items() if k not in PER_MESSAGE}
    return message


@pytest.mark.parametrize("priority", [0, 3, 9])
def test_the_message_is_the_one_send_task_writes(use_settings, broker_url: str, priority: int) -> None:  # type: ignore[no-untyped-def]
    use_settings(CNNQ_BROKER_URL=broker_url)
    queue = "q-compare"
    get_app().send_task(RUN_JOB_TASK, args=["train-abc123"], queue=queue, priority=message_priority(priority))
    send_message("train-abc123", queue, priority)
    client = redis_client()
    lists = {key: client.lrange(key, 0, -1) for key in priority_keys(queue)}
    used = {key: messages for key, messages in lists.items() if messages}
    assert list(used) == [priority_keys(queue)[message_priority(priority)]]
    ours, celerys = next(iter(used.values()))  # LPUSH: the newest first
    assert _comparable(ours) == _comparable(celerys)
    assert json.loads(ours)["headers"]["argsrepr"] == "['train-abc123']"

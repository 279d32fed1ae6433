"""The broker's Redis client is kept per URL (its connection reused from call to call), and still tells
a Redis that went away from one that came back."""

from __future__ import annotations

from pathlib import Path

from cnnq.lifecycle.broker import broker_problem, queue_depths, redis_client, send_message
from tests.conftest import RedisServer, free_port


def test_a_kept_client_sees_redis_go_and_come_back(use_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        use_settings(CNNQ_BROKER_URL=server.url)
        client = redis_client()
        assert broker_problem() is None
        assert redis_client() is client

        server.stop()
        problem = broker_problem()
        assert problem is not None and f"127.0.0.1:{server.port}" in problem

        server.start()
        assert broker_problem() is None
        send_message("train-abc123", "cpu", 0)
        assert queue_depths(["cpu"]) == {"cpu": 1}
        assert redis_client() is client
    finally:
        server.stop()

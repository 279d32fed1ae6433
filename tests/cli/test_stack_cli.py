"""`cnnq up` / `down` / `doctor` with real processes: an embedded redis-server under the home, a worker."""

from __future__ import annotations

import json
import os

import pytest
import redis

from tests.conftest import FAST_BEATS, free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_doctor_names_a_dead_broker_without_its_password(cli, use_settings) -> None:  # type: ignore[no-untyped-def]
    use_settings(CNNQ_BROKER_URL="redis://:opensesame@127.0.0.1:1/0")
    result = cli("doctor", "--json")
    assert result.code == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert not checks["broker"]["ok"] and "redis://:***@127.0.0.1:1/0" in checks["broker"]["detail"]
    assert checks["database"]["ok"] and checks["data"]["ok"] and checks["artifacts"]["ok"]
    table = cli("doctor")
    assert "opensesame" not in table.stdout + table.stderr and "problem" in table.stdout


@pytest.mark.slow
def test_up_starts_an_embedded_redis_and_a_worker_and_down_stops_them(cli, use_settings) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = use_settings(
        CNNQ_BROKER_URL=f"redis://:pw@127.0.0.1:{port}/0", CNNQ_DASHBOARD_PORT=str(free_port()), **FAST_BEATS
    )
    try:
        up = cli("up", "--json")
        assert up.code == 0, up.stderr
        started = {s["service"]: s for s in json.loads(up.stdout)}
        assert set(started) >= {"redis", "worker"} and not started["redis"]["already"]
        assert redis.Redis.from_url(f"redis://:pw@127.0.0.1:{port}/0").ping()
        assert (os.path.join(env["CNNQ_HOME"], "redis")) in started["redis"]["detail"]
        workers = json.loads(cli("workers", "--json").stdout)["workers"]
        assert (
            len(workers) == 1 and workers[0]["queues"] == ["cpu", "default"] and workers[0]["state"] == "up"
        )
        assert json.loads(cli("doctor", "--json").stdout)[0]["ok"]
        again = json.loads(cli("up", "--json").stdout)
        assert all(s["already"] for s in again if s["service"] in ("redis", "worker"))
    finally:
        down = cli("down", "--json")
    assert down.code == 0
    stopped = json.loads(down.stdout)
    for service in ("redis", "worker"):
        assert stopped[service] and not _alive(stopped[service])
    if stopped.get("dashboard"):
        assert not _alive(stopped["dashboard"])
    assert cli("doctor").code == 1  # the broker is gone again

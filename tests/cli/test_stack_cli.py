"""`cnnq up` / `down` / `doctor` with real processes: an embedded redis-server under the home, a worker."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from tests.conftest import FAST_BEATS, free_port

AWKWARD_PASSWORD = 'p w"\\é%x'
"""A space, a quote, a backslash, a non-ASCII letter and a percent: quoted in the URL and in redis.conf."""


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


@pytest.mark.parametrize("style", ["userinfo", "query", "ipv6"])
def test_the_embedded_redis_password_is_in_a_private_file_not_on_the_command_line(  # type: ignore[no-untyped-def]
    use_settings, style: str
) -> None:
    from cnnq.cli.local_stack import ensure_broker, stop_service

    port = free_port()
    quoted = quote(AWKWARD_PASSWORD, safe="")
    host = "::1" if style == "ipv6" else "127.0.0.1"
    url = {
        "userinfo": f"redis://:{quoted}@127.0.0.1:{port}/0",
        "query": f"redis://127.0.0.1:{port}/0?password={quoted}",
        "ipv6": f"redis://:{quoted}@[::1]:{port}/0",
    }[style]
    env = use_settings(CNNQ_BROKER_URL=url)
    config = Path(env["CNNQ_HOME"]) / "redis" / "redis.conf"
    config.parent.mkdir(parents=True)
    config.write_text("# an older, world-readable file\n")
    config.chmod(0o644)
    try:
        started = ensure_broker()
        assert not started.already and started.pid
        cmdline = Path(f"/proc/{started.pid}/cmdline").read_bytes()
        for secret in (AWKWARD_PASSWORD, quoted):
            assert secret.encode() not in cmdline
            assert secret not in started.detail
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert "requirepass " in config.read_text()
        client = redis.Redis(host=host, port=port, password=AWKWARD_PASSWORD)
        assert client.ping()
        # redis-server read its settings from that file (its process title hides its arguments).
        assert client.info("server")["config_file"] == str(config)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=host, port=port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=host, port=port, password=AWKWARD_PASSWORD + "x").ping()
    finally:
        stop_service("redis")


def test_up_refuses_to_serve_the_dashboard_beyond_this_host_without_a_password(cli, use_settings) -> None:  # type: ignore[no-untyped-def]
    env = use_settings(CNNQ_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0", CNNQ_DASHBOARD_HOST="0.0.0.0")
    up = cli("up")
    assert up.code == 2
    [line] = up.stderr.strip().splitlines()
    assert "0.0.0.0" in line and "CNNQ_DASHBOARD_PASSWORD" in line and "Traceback" not in line
    run = Path(env["CNNQ_HOME"]) / "run"
    assert not run.exists() or not list(run.glob("*.pid"))  # refused before anything started


def test_dashboard_refuses_a_public_host_without_a_password(cli, use_settings) -> None:  # type: ignore[no-untyped-def]
    use_settings()
    for host in ("0.0.0.0", "::", "192.0.2.7", "example.org"):
        done = cli("dashboard", "--host", host)
        assert done.code == 2, host
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error:") and "CNNQ_DASHBOARD_PASSWORD" in line and host in line


def test_doctor_masks_a_password_given_as_a_query_parameter(cli, use_settings) -> None:  # type: ignore[no-untyped-def]
    use_settings(CNNQ_BROKER_URL="redis://127.0.0.1:1/0?password=opensesame")
    result = cli("doctor", "--json")
    assert result.code == 1
    broker = {c["name"]: c for c in json.loads(result.stdout)}["broker"]
    assert "redis://127.0.0.1:1/0?password=***" in broker["detail"]
    table = cli("doctor")
    assert "opensesame" not in result.stdout + table.stdout + table.stderr

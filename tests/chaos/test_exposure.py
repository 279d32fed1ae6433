"""Exposure: what `cnnq up` starts listens on loopback addresses only, the dashboard is served beyond
this host only behind a password, and no secret shows on a command line, in `up`'s output or in a log.

The listening sockets are read from /proc (each process's socket inodes matched with /proc/net's
tables); no traffic goes anywhere but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.chaos.processes import cmdline, descendants, kill_process_groups
from tests.conftest import FAST_BEATS, REPO, SHARED_DATASETS, cnnq_command, free_port

REDIS_PASSWORD = "redis-secret-7f3a9"
DASHBOARD_PASSWORD = "dashboard-secret-91c2e"
APP = REPO / "cnnq" / "dashboard" / "app.py"

_LISTENING = {"tcp": "0A", "tcp6": "0A", "udp": "07", "udp6": "07"}
"""The state that means "accepts from anyone" in each /proc/net table: TCP LISTEN, a bound UDP socket."""


def cnnq(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`cnnq ARGS` as its own process with exactly these CNNQ_* settings (none of the runner's)."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("CNNQ_")}
    return subprocess.run(
        [*cnnq_command(), *args],
        env={**base, "CNNQ_TORCH_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net prints an address as 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def listening_sockets() -> dict[int, tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """inode -> (protocol, address, port) of every listening TCP and bound UDP socket of this host."""
    found = {}
    for table, state in _LISTENING.items():
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                address, port = fields[1].split(":")
                if fields[3] == state and int(port, 16) and int(fields[9]):
                    found[int(fields[9])] = (table, _address(address), int(port, 16))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def started_processes(home: Path) -> dict[str, list[int]]:
    """Every process `cnnq up` started: the pids of its pid files and all processes under them."""
    tree = {}
    for pid_file in sorted((home / "run").glob("*.pid")):
        pid = int(pid_file.read_text().strip())
        tree[pid_file.stem] = [pid, *descendants(pid)]
    return tree


def listening_of(processes: dict[str, list[int]]) -> list[tuple[str, int, str, str, int]]:
    """(service, pid, protocol, address, port) of each socket these processes listen on."""
    sockets = listening_sockets()
    return [
        (service, pid, sockets[inode][0], str(sockets[inode][1]), sockets[inode][2])
        for service, pids in processes.items()
        for pid in pids
        for inode in socket_inodes(pid)
        if inode in sockets
    ]


def wait_for_dashboard(port: int, home: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = f"http://127.0.0.1:{port}/_stcore/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=2) as response:
            if response.read().strip() == b"ok":
                return
        time.sleep(0.5)
    log = home / "logs" / "dashboard.log"
    raise AssertionError(
        f"the dashboard did not answer on 127.0.0.1:{port}:\n{log.read_text(errors='replace')}"
    )


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`cnnq up`'s settings: home and SQLite in tmp, an embedded Redis with a password on a free port,
    the dashboard on a free port with a password. `cnnq down` at the end; whatever it left is killed."""
    home = tmp_path / "home"
    env = {
        "CNNQ_HOME": str(home),
        "CNNQ_DATABASE_URL": f"sqlite:///{tmp_path / 'cnnq.db'}",
        "CNNQ_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "CNNQ_DATA_ROOT": str(SHARED_DATASETS),
        "CNNQ_BROKER_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
        "CNNQ_DASHBOARD_PORT": str(free_port()),
        "CNNQ_DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
        **FAST_BEATS,
    }  # CNNQ_DASHBOARD_HOST unset: the default is what is tested
    yield env
    left = started_processes(home) if (home / "run").is_dir() else {}
    if left:  # the test failed before its own `cnnq down`
        cnnq("down", env=env, timeout=120)
        kill_process_groups(pid for pids in left.values() for pid in pids)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_everything_cnnq_up_starts_listens_on_loopback_only_and_shows_no_secret(
    stack_env: dict[str, str],
) -> None:
    home = Path(stack_env["CNNQ_HOME"])
    redis_port = int(stack_env["CNNQ_BROKER_URL"].rsplit(":", 1)[1].split("/")[0])
    dashboard_port = int(stack_env["CNNQ_DASHBOARD_PORT"])
    up = cnnq("up", env=stack_env, timeout=180)
    assert up.returncode == 0, f"cnnq up: {up.stdout}{up.stderr}"
    wait_for_dashboard(dashboard_port, home)
    time.sleep(3)  # the worker's standby job process, if any, is up by now

    processes = started_processes(home)
    assert set(processes) == {"redis", "worker", "dashboard"}
    assert len(processes["worker"]) >= 2, "the worker supervisor and its Celery worker"
    listening = listening_of(processes)
    # The check sees the services it is about: Redis and the dashboard on their configured ports.
    assert {("redis", redis_port), ("dashboard", dashboard_port)} <= {
        (s, port) for s, _, _, _, port in listening
    }
    exposed = [entry for entry in listening if not ipaddress.ip_address(entry[3]).is_loopback]
    assert exposed == [], "\n".join(
        f"{service} (pid {pid}: {cmdline(pid)}) listens on {protocol} {address}:{port}"
        for service, pid, protocol, address, port in exposed
    )

    # No secret on any command line (what `ps` shows every user), in what `up` printed, or in a log.
    for pids in processes.values():
        for pid in pids:
            for secret in (REDIS_PASSWORD, DASHBOARD_PASSWORD):
                assert secret not in cmdline(pid), f"pid {pid}: {cmdline(pid)}"
    for secret in (REDIS_PASSWORD, DASHBOARD_PASSWORD):
        assert secret not in up.stdout + up.stderr
    assert "redis://:***@127.0.0.1" in up.stdout and f"http://127.0.0.1:{dashboard_port}" in up.stdout

    down = cnnq("down", env=stack_env, timeout=120)
    assert down.returncode == 0, f"cnnq down: {down.stdout}{down.stderr}"
    logs = sorted((home / "logs").glob("*.log"))
    assert {log.stem for log in logs} >= {"redis", "worker", "dashboard"}
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in (REDIS_PASSWORD, DASHBOARD_PASSWORD):
            assert secret not in text, f"{log.name} holds a password"


@pytest.mark.slow
def test_the_dashboard_beyond_this_host_without_a_password_is_refused(tmp_path: Path) -> None:
    env = {
        "CNNQ_HOME": str(tmp_path / "home"),
        "CNNQ_DATABASE_URL": f"sqlite:///{tmp_path / 'cnnq.db'}",
        "CNNQ_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "CNNQ_DASHBOARD_PASSWORD": "",
    }
    dashboard = cnnq("dashboard", "--host", "0.0.0.0", "--port", str(free_port()), env=env, timeout=60)
    up = cnnq("up", env={**env, "CNNQ_DASHBOARD_HOST": "0.0.0.0"}, timeout=60)
    for refused in (dashboard, up):
        assert refused.returncode == 2, refused.stdout + refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith("error:") and "0.0.0.0" in line and "CNNQ_DASHBOARD_PASSWORD" in line
    run = tmp_path / "home" / "run"
    assert not run.is_dir() or list(run.glob("*.pid")) == [], "`cnnq up` started something before refusing"


def test_with_a_password_the_dashboard_shows_the_login_form_first(
    cnnq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnq.settings import reload_settings

    monkeypatch.setenv("CNNQ_DASHBOARD_PASSWORD", DASHBOARD_PASSWORD)
    reload_settings()
    try:
        app = AppTest.from_file(str(APP), default_timeout=60)
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        assert [t.label for t in app.text_input] == ["Password"] and [b.label for b in app.button] == [
            "Log in"
        ]
        assert not app.dataframe and [t.value for t in app.title] == ["cnnq"]
        app.text_input(key="cnnq_password").input(DASHBOARD_PASSWORD)
        app.button[0].click()
        app.run()
        assert [t.value for t in app.title] == ["Jobs"]
    finally:
        monkeypatch.delenv("CNNQ_DASHBOARD_PASSWORD")
        reload_settings()

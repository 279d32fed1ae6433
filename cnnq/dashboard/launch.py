"""How the dashboard is served, for `cnnq dashboard` and `cnnq up` alike: the command, its environment, and
the refusal to serve it beyond this host without a password."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from cnnq.errors import UserError
from cnnq.settings import get_settings

APP = Path(__file__).resolve().parent / "app.py"


def is_loopback(host: str) -> bool:
    """True for addresses only this host can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_open_exposure(host: str) -> None:
    """Anyone who reaches the dashboard can cancel and retry jobs and see scored images: beyond this
    host, it needs a password."""
    if not is_loopback(host) and get_settings().dashboard_password is None:
        raise UserError(
            f"serving the dashboard on {host} needs a password: set CNNQ_DASHBOARD_PASSWORD, "
            "or serve it on 127.0.0.1 (CNNQ_DASHBOARD_HOST, --host)"
        )


def dashboard_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def server_environment() -> dict[str, str]:
    """The server's environment: this one, with the dashboard password the settings hold.

    The password travels here, never on the command line, where `ps` would show it.
    """
    env = dict(os.environ)
    password = get_settings().dashboard_password
    if password is not None:
        env["CNNQ_DASHBOARD_PASSWORD"] = password.get_secret_value()
    return env


def streamlit_command(host: str, port: int) -> list[str]:
    """`streamlit run` on the dashboard, headless, without telemetry or a file watcher, on `host` only.

    The one command line both `cnnq dashboard` and `cnnq up` start; it carries no secret.
    """
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]

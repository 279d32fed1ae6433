"""`cnnq dashboard`: serve the Streamlit dashboard on the job database."""

from __future__ import annotations

import signal
import subprocess

import typer

from cnnq.cli.output import err_console
from cnnq.dashboard.launch import dashboard_url, refuse_open_exposure, server_environment, streamlit_command
from cnnq.settings import get_settings, mask_url


def dashboard(
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port to serve on (default: CNNQ_DASHBOARD_PORT, 8501)."
    ),
    host: str | None = typer.Option(
        None,
        "--host",
        help="Address to listen on (default: CNNQ_DASHBOARD_HOST, 127.0.0.1); "
        "0.0.0.0 serves other hosts too and needs CNNQ_DASHBOARD_PASSWORD.",
    ),
) -> None:
    """Serve the dashboard (jobs, curves, evaluation reports, bulk scores, X-ray check, workers)."""
    settings = get_settings()
    port = port or settings.dashboard_port
    host = host or settings.dashboard_host
    refuse_open_exposure(host)
    err_console.print(
        f"dashboard on {dashboard_url(host, port)} · database {mask_url(settings.database_url)}",
        highlight=False,
    )
    # The child gets this environment, CNNQ_* included, so it reads the same settings.
    server = subprocess.Popen(streamlit_command(host, port), env=server_environment())
    # Stopping this command stops the server: SIGTERM is passed on, Ctrl-C reaches both.
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = server.wait()
    if code not in (0, -2, 130):
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)

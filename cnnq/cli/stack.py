"""`cnnq up`, `cnnq down`, `cnnq doctor`: the services of one machine."""

from __future__ import annotations

import typer
from rich.table import Table

from cnnq.cli.output import console, print_json


def up_command(
    as_json: bool = typer.Option(False, "--json", help="Print what was started as JSON."),
) -> None:
    """Start everything one machine needs in the background: database, Redis, workers, dashboard."""
    from cnnq.dashboard.launch import refuse_open_exposure
    from cnnq.db.migrate import upgrade_database
    from cnnq.settings import get_settings
    from cnnq.workers.local_stack import ensure_broker, ensure_dashboard, ensure_worker

    refuse_open_exposure(get_settings().dashboard_host)  # before anything starts, not after the worker
    upgrade_database()
    started = [ensure_broker(), ensure_worker()]
    dashboard = ensure_dashboard()
    if dashboard is not None:
        started.append(dashboard)
    if as_json:
        print_json(
            [{"service": s.service, "pid": s.pid, "detail": s.detail, "already": s.already} for s in started]
        )
        return
    for s in started:
        verb = "running" if s.already else "started"
        console.print(f"{s.service}: {verb}{f' (pid {s.pid})' if s.pid else ''}: {s.detail}", highlight=False)
    console.print("`cnnq down` stops what `cnnq up` started", highlight=False)


def down_command(
    as_json: bool = typer.Option(False, "--json", help="Print what was stopped as JSON."),
) -> None:
    """Stop what `cnnq up` started (running jobs are re-queued when a worker comes back)."""
    from cnnq.workers.local_stack import SERVICES, stop_service

    stopped = {service: stop_service(service) for service in SERVICES}
    if as_json:
        print_json(stopped)
        return
    for service, pid in stopped.items():
        console.print(
            f"{service}: {'stopped (pid ' + str(pid) + ')' if pid else 'not running'}", highlight=False
        )


def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check the broker, the database, the GPUs and the data root; exit 1 when something is wrong."""
    from cnnq.workers.doctor import run_checks

    checks = run_checks()
    if as_json:
        print_json([c.as_dict() for c in checks])
    else:
        table = Table("CHECK", "", "DETAIL")
        for c in checks:
            table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]problem[/]", c.detail)
        console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("down")(down_command)
    app.command("doctor")(doctor_command)

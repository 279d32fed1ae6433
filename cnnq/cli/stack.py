"""`cnnq up`, `cnnq down`, `cnnq doctor`: the services of one machine.

`up` and `down` start and stop them (`cnnq.cli.local_stack`); `doctor`'s checks are below: is the
broker there, the database migrated, a GPU visible, the data root in place, the artifact root writable?
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass

import typer
from rich.table import Table

from cnnq.cli.output import console, print_json
from cnnq.settings import get_settings, mask_url, url_secrets


def up_command(
    as_json: bool = typer.Option(False, "--json", help="Print what was started as JSON."),
) -> None:
    """Start everything one machine needs in the background: database, Redis, workers, dashboard."""
    from cnnq.cli.local_stack import ensure_broker, ensure_dashboard, ensure_worker
    from cnnq.dashboard.launch import refuse_open_exposure
    from cnnq.db.migrate import upgrade_database

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
    from cnnq.cli.local_stack import SERVICES, stop_service

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


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _scrub(text: str, url: str) -> str:
    """Error text with the URL's secrets removed, whatever the library put in it."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def check_broker() -> Check:
    from cnnq.lifecycle.broker import broker_problem

    url = get_settings().broker_url
    problem = broker_problem(url)
    if problem:
        return Check("broker", False, _scrub(f"{problem}; `cnnq up` starts one here", url))
    return Check("broker", True, f"{mask_url(url)} answers")


def check_database() -> Check:
    from cnnq.db.migrate import alembic_config, current_revision

    url = get_settings().database_url
    try:
        current = current_revision(url)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return Check("database", False, _scrub(f"{mask_url(url)}: {type(error).__name__}: {first}", url))
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    if current != head:
        return Check(
            "database", False, f"{mask_url(url)} is at revision {current}, not {head}: run `cnnq db upgrade`"
        )
    return Check("database", True, f"{mask_url(url)} at revision {current}")


def check_gpus() -> Check:
    from cnnq.workers.gpus import visible_gpus

    gpus = visible_gpus()
    if not gpus:
        return Check("gpus", True, "no GPU visible (nvidia-smi lists none): CPU workers only")
    return Check("gpus", True, "; ".join(f"{g.index}: {g.name} ({g.memory_mb} MiB)" for g in gpus))


def check_data_root() -> Check:
    root = get_settings().data_dir
    if not root.is_dir():
        return Check("data", False, f"data root {root} does not exist: create it or set CNNQ_DATA_ROOT")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    return Check("data", True, f"{root}: {', '.join(found) or 'empty (`cnnq data fetch` fills it)'}")


def check_artifact_root() -> Check:
    root = get_settings().artifact_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root):
            pass
    except OSError as error:
        return Check("artifacts", False, f"cannot write to {root}: {error.strerror}; set CNNQ_ARTIFACT_ROOT")
    return Check("artifacts", True, f"{root} is writable (share it between hosts)")


def run_checks() -> list[Check]:
    return [check_broker(), check_database(), check_gpus(), check_data_root(), check_artifact_root()]


def register(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("down")(down_command)
    app.command("doctor")(doctor_command)

"""Looking at jobs and steering them: `jobs`, `show`, `logs`, `wait`, `cancel`, `retry`.

The database modules are imported by the commands that run, not here: `cnnq --help` and the
commands of other modules do not pay for SQLAlchemy. The commands run Core statements on a
connection; none imports the ORM (`tests/cli/test_import_floor.py`).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from cnnq.cli.output import console, err_console, print_json, print_table
from cnnq.db.status import JobStatus
from cnnq.errors import UserError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Row

_POLL_SECONDS = 0.5
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_STYLE = {
    JobStatus.QUEUED: "cyan",
    JobStatus.RUNNING: "yellow",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "magenta",
    JobStatus.PRUNED: "blue",
}


def _is_lost(connection: Connection, job: Row[Any]) -> bool:
    """Whether a running job's worker stopped beating, judged on the database's clock."""
    if job.status != JobStatus.RUNNING:
        return False
    from cnnq.db.clock import read_db_now
    from cnnq.db.jobs import is_lost
    from cnnq.settings import get_settings

    return is_lost(job, timedelta(seconds=get_settings().lost_after_seconds), read_db_now(connection))


def status_text(connection: Connection, job: Row[Any]) -> str:
    """The status as people read it: a running job whose worker stopped beating is `RUNNING (lost)`."""
    return f"{job.status} (lost)" if _is_lost(connection, job) else str(job.status)


def _styled_status(connection: Connection, job: Row[Any]) -> str:
    return f"[{_STYLE.get(job.status, 'white')}]{status_text(connection, job)}[/]"


def _job(connection: Connection, job_id: str) -> Row[Any]:
    from cnnq.db.jobs import JobNotFound, find_job

    try:
        return find_job(connection, job_id)
    except JobNotFound as error:
        raise UserError(str(error)) from None


def full_object(connection: Connection, job: Row[Any]) -> dict[str, Any]:
    """The job object, plus shard and prediction counts for a bulk parent."""
    from cnnq.db.jobs import bulk_decision, bulk_id_of, count_by_status
    from cnnq.db.records import prediction_counts
    from cnnq.db.views import job_object

    obj = job_object(connection, job)
    obj["lost"] = _is_lost(connection, job)
    shards = count_by_status(connection, job.id)
    if shards and job.kind == "sweep":
        obj["trials"] = {str(status): count for status, count in shards.items()}
    elif shards:
        obj["shards"] = {str(status): count for status, count in shards.items()}
        _, positive_class = bulk_decision(connection, job)  # the class the dashboard counts as positive
        obj["predictions"] = prediction_counts(connection, bulk_id_of(job), positive_class)
    return obj


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_since(text: str) -> datetime:
    match = _SINCE.match(text.strip())
    if match:
        return _utcnow() - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--since: {text!r} is not a duration like 30m, 2h, 7d or a date like 2026-11-27"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    seconds = int(((end or _utcnow()) - start).total_seconds())
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _engine_line(result: dict[str, Any]) -> str:
    """`onnx-int8: 1820 in int8, 180 in fp32 (52 near the boundary)`, or just the engine's name."""
    report = result.get("engine_report") or {}
    if "int8_scored" not in report:
        return str(result["engine"])
    line = (
        f"{result['engine']}: {report['int8_scored']} in int8, {report['fp32_scored']} in fp32 "
        f"({report['near_boundary_rescored']} near the boundary)"
    )
    return line + (", went back to fp32" if report["fell_back_to_fp32"] else "")


def print_job(connection: Connection, job: Row[Any]) -> None:
    """`cnnq show` for people: spec, status, timings, last metrics, artifacts, error."""
    from rich.table import Table

    obj = full_object(connection, job)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", job.id)
    table.add_row("kind", job.kind)
    table.add_row("status", _styled_status(connection, job))
    table.add_row("progress", f"{job.progress:.0%}")
    if job.message:
        table.add_row("message", job.message)
    table.add_row("queue", f"{job.queue} (priority {job.priority})")
    if job.parent_id:
        table.add_row("sweep" if job.kind == "train" else "bulk job", job.parent_id)
    table.add_row("worker", f"{job.worker or '-'} on {job.device or '-'}, attempts {job.attempts}")
    table.add_row("created", job.created_at.isoformat(timespec="seconds"))
    if job.started_at:
        table.add_row("started", job.started_at.isoformat(timespec="seconds"))
        table.add_row("ran for", _duration(job.started_at, job.finished_at))
    if job.finished_at:
        table.add_row("finished", job.finished_at.isoformat(timespec="seconds"))
    internal = ("inputs", "paths", "calibration_paths")
    shown = {k: v for k, v in job.spec.items() if v is not None and k not in internal}
    table.add_row("spec", " ".join(f"{k}={v}" for k, v in shown.items()))
    for name, value in obj["metrics"].items():
        table.add_row(name, f"{value:.4g}")
    for artifact in obj["artifacts"]:
        table.add_row(f"artifact {artifact['kind']}", f"{artifact['uri']} ({artifact['bytes']} bytes)")
    if job.result and job.result.get("engine"):
        table.add_row("engine", _engine_line(job.result))
    if job.result and job.result.get("data"):
        data = job.result["data"]
        table.add_row("data", "; ".join([f"{data['input']}, {data['held']}", *data["choices"]]))
    if "trials" in obj:
        table.add_row("trials", ", ".join(f"{n} {s.lower()}" for s, n in obj["trials"].items()))
    if "shards" in obj:
        table.add_row("shards", ", ".join(f"{n} {s.lower()}" for s, n in obj["shards"].items()))
        table.add_row("predictions", ", ".join(f"{n} {k}" for k, n in obj["predictions"].items()))
    if obj["error"]:
        table.add_row("error", f"[red]{obj['error']['type']}: {obj['error']['message']}[/]")
        if obj["error"]["traceback"]:
            table.add_row("traceback", obj["error"]["traceback"])
    console.print(table)


def wait_for(job_id: str, *, as_json: bool = False, timeout: float | None = None) -> int:
    """Follow a job until it ends, showing its progress; 0 when it SUCCEEDED, 1 otherwise, 124 on timeout."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from cnnq.db.session import connection_scope

    deadline = None if timeout is None else time.monotonic() + timeout
    with connection_scope() as connection:
        job_id = _job(connection, job_id).id
    shown = console if not as_json else err_console
    live = shown.is_terminal
    last_line = ""
    progress = Progress(
        TextColumn("{task.fields[job]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]} {task.description}"),
        TimeElapsedColumn(),
        console=shown,
        transient=False,
        disable=not live,
    )
    with progress:
        bar = progress.add_task("", total=1.0, job=job_id, status="")
        while True:
            with connection_scope() as connection:
                job = _job(connection, job_id)
                status, fraction, message = status_text(connection, job), job.progress, job.message or ""
                finished = job.status.finished
            if live:
                progress.update(bar, completed=fraction, description=message, status=status)
            else:
                line = f"{job_id} {status} {fraction:.0%} {message}".rstrip()
                if line != last_line:
                    shown.print(line, highlight=False, markup=False, soft_wrap=True)
                    last_line = line
            if finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                err_console.print(f"{job_id} is still {status} after {timeout:g}s", highlight=False)
                return 124
            time.sleep(_POLL_SECONDS)
    with connection_scope() as connection:
        job = _job(connection, job_id)
        if as_json:
            print_json(full_object(connection, job))
        else:
            print_job(connection, job)
        return 0 if job.status == JobStatus.SUCCEEDED else 1


def jobs_command(
    status: list[str] = typer.Option(
        [],
        "--status",
        "-s",
        help="Only jobs in this status (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, PRUNED).",
    ),
    kind: list[str] = typer.Option(
        [], "--kind", "-k", help="Only jobs of this kind (train, eval, infer, sweep)."
    ),
    since: str | None = typer.Option(None, "--since", help="Only jobs created since: 30m, 2h, 7d or a date."),
    shards: bool = typer.Option(False, "--shards", help="Also list the shards of bulk jobs."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="At most this many jobs, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of job objects."),
) -> None:
    """List jobs, newest first."""
    try:
        statuses = [JobStatus(s.upper()) for s in status]
    except ValueError:
        raise UserError(f"--status: one of {', '.join(JobStatus)}; got {', '.join(status)}") from None
    bad_kinds = [k for k in kind if k not in ("train", "eval", "infer", "sweep")]
    if bad_kinds:
        raise UserError(f"--kind: {bad_kinds[0]!r} is not train, eval, infer or sweep")
    moment = parse_since(since) if since else None
    from rich.table import Table

    from cnnq.db.jobs import list_jobs
    from cnnq.db.session import connection_scope

    with connection_scope() as connection:
        found = list_jobs(
            connection, statuses=statuses, kinds=kind, since=moment, top_level=not shards, limit=limit
        )
        if as_json:
            print_json([full_object(connection, job) for job in found])
            return
        table = Table()
        for header in ("ID", "KIND", "STATUS", "PROGRESS"):
            table.add_column(header, no_wrap=True)
        for header in ("QUEUE", "WORKER", "CREATED", "MESSAGE"):
            table.add_column(header, overflow="fold")
        for job in found:
            table.add_row(
                job.id,
                job.kind,
                _styled_status(connection, job),
                f"{job.progress:.0%}",
                job.queue,
                job.worker or "",
                job.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                job.message or "",
            )
    if found:
        print_table(table)
    else:
        console.print("no jobs")


def show_command(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print the job object as JSON."),
) -> None:
    """A job's spec, status, timings, last metrics, artifacts and error."""
    from cnnq.db.session import connection_scope

    with connection_scope() as connection:
        job = _job(connection, job_id)
        if as_json:
            print_json(full_object(connection, job))
        else:
            print_job(connection, job)


def logs_command(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {time, line}."),
) -> None:
    """A job's log lines."""
    from cnnq.db.records import log_lines
    from cnnq.db.session import connection_scope

    after = 0
    collected: list[dict[str, str]] = []
    while True:
        with connection_scope() as connection:
            job = _job(connection, job_id)
            finished = job.status.finished
            for line in log_lines(connection, job.id, after):
                after = line.id
                if as_json:
                    collected.append({"time": line.time.isoformat(), "line": line.line})
                else:
                    stamp = line.time.astimezone().strftime("%H:%M:%S")
                    console.print(f"{stamp} {line.line}", highlight=False, markup=False, soft_wrap=True)
        if not follow or finished:
            break
        time.sleep(_POLL_SECONDS)
    if as_json:
        print_json(collected)


def wait_command(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    timeout: float | None = typer.Option(None, "--timeout", min=0, help="Give up after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the finished job object as JSON."),
) -> None:
    """Follow a job with a progress bar until it ends; exit 0 only if it SUCCEEDED (124: timed out)."""
    code = wait_for(job_id, as_json=as_json, timeout=timeout)
    if code:
        raise typer.Exit(code)


def cancel_command(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print the job object as JSON."),
) -> None:
    """Cancel a job: a queued one now, a running one within seconds (a bulk job: all its shards)."""
    from cnnq.db.session import connection_scope
    from cnnq.lifecycle.cancel import cancel_job

    with connection_scope() as connection:
        job = _job(connection, job_id)
        before = job.status
    cancel_job(job.id)
    with connection_scope() as connection:
        job = _job(connection, job.id)
        if as_json:
            print_json(full_object(connection, job))
        elif before.finished:
            console.print(f"{job.id} had already ended: {job.status}")
        elif job.status == JobStatus.CANCELLED:
            console.print(f"{job.id} cancelled")
        else:
            console.print(f"{job.id} asked to stop; it ends CANCELLED within seconds (`cnnq wait {job.id}`)")


def retry_command(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new job object as JSON."),
) -> None:
    """Submit a new job with the same spec, queue and priority."""
    from cnnq.db.session import connection_scope
    from cnnq.lifecycle.submit import retry_job

    with connection_scope() as connection:
        old_id = _job(connection, job_id).id
    new_id = retry_job(old_id)
    with connection_scope() as connection:
        if as_json:
            print_json(full_object(connection, _job(connection, new_id)))
        else:
            console.print(f"queued {new_id} (retry of {old_id})")


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs_command)
    app.command("show")(show_command)
    app.command("logs")(logs_command)
    app.command("wait")(wait_command)
    app.command("cancel")(cancel_command)
    app.command("retry")(retry_command)

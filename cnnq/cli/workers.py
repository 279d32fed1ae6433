"""`cnnq worker` starts workers on this host; `cnnq workers` lists them with the queues' depths."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cnnq.cli.output import console, err_console, print_json, print_table
from cnnq.settings import get_settings


def worker_command(
    gpus: str | None = typer.Option(
        None, "--gpus", help="GPUs to serve, one worker process each: `all` or indices like 0,1."
    ),
    cpu: bool = typer.Option(False, "--cpu", help="Serve the cpu queue."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, max=256, help="CPU worker processes."),
    queues: str | None = typer.Option(
        None, "--queues", "-Q", help="Also listen on these queues (comma list)."
    ),
) -> None:
    """Start workers here and stay in the foreground (Ctrl-C stops them after their current job)."""
    from cnnq.workers.gpus import visible_gpus
    from cnnq.workers.launch import parse_gpus, plan_workers, run_workers

    if gpus is None and not cpu:
        if visible_gpus():
            gpus = "all"
        else:
            cpu = True
    gpu_list = parse_gpus(gpus) if gpus is not None else []
    extra = [q.strip() for q in (queues or "").split(",") if q.strip()]
    from cnnq.lifecycle.queues import queue_for

    for queue in extra:
        queue_for("auto", queue)  # refuses a bad name
    from cnnq.db.migrate import upgrade_database

    upgrade_database()
    plans = plan_workers(gpu_list, concurrency if cpu else 0, extra)
    for plan in plans:
        err_console.print(f"starting {plan.name} on {','.join(plan.queues)}", highlight=False)
    code = run_workers(plans)
    if code:
        raise typer.Exit(code)


def workers_command(
    all_: bool = typer.Option(False, "--all", help="Also list workers that stopped."),
    as_json: bool = typer.Option(False, "--json", help="Print workers and queue depths as JSON."),
) -> None:
    """Workers (host, pid, queues, GPU, last heartbeat) and how many jobs wait in each queue."""
    from datetime import timedelta

    from cnnq.db.clock import read_db_now
    from cnnq.db.session import connection_scope
    from cnnq.db.workers import list_workers, worker_state
    from cnnq.lifecycle.broker import broker_problem, queue_depths
    from cnnq.lifecycle.queues import CPU_QUEUE, DEFAULT_QUEUE, GPU_QUEUE

    lost_after = timedelta(seconds=get_settings().lost_after_seconds)
    with connection_scope() as connection:
        now = read_db_now(connection)
        rows: list[dict[str, Any]] = [
            {
                "name": w.name,
                "hostname": w.hostname,
                "pid": w.pid,
                "queues": w.queues,
                "gpu_index": w.gpu_index,
                "gpu_name": w.gpu_name,
                "gpu_memory_mb": w.gpu_memory_mb,
                "memory_mb": w.memory_mb,
                "state": worker_state(w, lost_after, now),
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": w.heartbeat_at.isoformat(),
            }
            for w in list_workers(connection, include_stopped=all_)
        ]
    names = list(
        dict.fromkeys([DEFAULT_QUEUE, CPU_QUEUE, GPU_QUEUE, *(q for r in rows for q in r["queues"])])
    )
    problem = broker_problem()
    depths: dict[str, int] | None = None if problem else queue_depths(names)
    if as_json:
        print_json({"workers": rows, "queues": depths, "broker_problem": problem})
        return
    table = Table()
    table.add_column("NAME", no_wrap=True)
    for header in ("HOST", "PID", "QUEUES", "GPU", "STATE", "LAST BEAT"):
        table.add_column(header, overflow="fold")
    for r in rows:
        gpu = (
            f"{r['gpu_index']}: {r['gpu_name']} ({r['gpu_memory_mb']} MiB)"
            if r["gpu_index"] is not None
            else "-"
        )
        table.add_row(
            r["name"], r["hostname"], str(r["pid"]), ",".join(r["queues"]), gpu, r["state"], r["heartbeat_at"]
        )
    if rows:
        print_table(table)
    else:
        console.print("no workers; start one with `cnnq worker` or `cnnq up`")
    if depths is None:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False)
    else:
        console.print("waiting: " + ", ".join(f"{q} {n}" for q, n in depths.items()), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
    app.command("workers")(workers_command)

"""The `cnnq` command: one typer app with a sub-command module per concern.

Each module registers its commands with typer, rich and the job specs only; what a command needs
(SQLAlchemy, Celery, torch for the ones that run a model) it imports when it runs, so `cnnq --help`
costs no more than typer and `cnnq jobs` no more than SQLAlchemy (`benchmarks/cli_latency.py`).
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Sequence

import typer
from typer._click.exceptions import ClickException, UsageError

from cnnq.cli.output import err_console
from cnnq.errors import ServiceUnavailable, UserError

COMMANDS: dict[str, tuple[str, ...]] = {
    "submit": ("submit",),
    "sweep": ("sweep",),
    "run": ("run",),
    "jobs": ("jobs", "show", "logs", "wait", "cancel", "retry"),
    "models": ("models",),
    "data": ("data",),
    "db": ("db",),
    "workers": ("worker", "workers"),
    "stack": ("up", "down", "doctor"),
    "results": ("results",),
    "explain": ("explain",),
    "dashboard": ("dashboard",),
}
"""Each module of `cnnq.cli` and the commands its `register` adds, in the order `--help` lists them."""


def build_app(command: str | None = None) -> typer.Typer:
    """The CLI with every command, or with only the module that holds `command`: running one command
    needs neither the other modules' imports nor typer building their options (`submit` and `run`
    have 40 each)."""
    app = typer.Typer(
        name="cnnq",
        help="Submit CNN training, evaluation and inference jobs to Celery workers; "
        "their state lives in SQL.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(lambda: None)  # a group even when one module adds a single command
    modules = [module for module, names in COMMANDS.items() if command in names] or list(COMMANDS)
    for module in modules:
        importlib.import_module(f"cnnq.cli.{module}").register(app)
    return app


def _refuse(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)


def _database_went_away(error: Exception) -> bool:
    """An OperationalError or InterfaceError from SQLAlchemy (only a command that imported it can
    raise one, so `--help` need not import it to tell)."""
    exc = sys.modules.get("sqlalchemy.exc")
    return exc is not None and isinstance(error, exc.OperationalError | exc.InterfaceError)


def _schema_missing(error: Exception) -> bool:
    """A query on a database that has none of cnnq's tables (a new home, a wrong URL)."""
    cause = getattr(error, "orig", None)
    return type(cause).__name__ == "UndefinedTable" or "no such table" in str(cause or "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every refused input is one line on standard error and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    app = build_app(args[0] if args else None)
    try:
        code = app(args=args, prog_name="cnnq", standalone_mode=False)
    except UserError as error:
        _refuse(str(error).replace("[", r"\["))
        return 2
    except ServiceUnavailable as error:
        _refuse(str(error).replace("[", r"\["))
        return 1
    except UsageError as error:
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
        _refuse(f"{error.format_message()}{hint}".replace("[", r"\["))
        return error.exit_code
    except ClickException as error:
        _refuse(error.format_message().replace("[", r"\["))
        return error.exit_code
    except typer.Abort:
        _refuse("aborted")
        return 130
    except Exception as error:  # the database went away mid-command, or was never set up
        if _schema_missing(error):
            from cnnq.settings import get_settings, mask_url

            _refuse(
                f"the database {mask_url(get_settings().database_url)} has no cnnq tables yet, so no job "
                "was ever submitted to it; check CNNQ_DATABASE_URL, or create them with `cnnq db upgrade`"
            )
            return 1
        if not _database_went_away(error):
            raise
        from cnnq.db.outage import database_unavailable

        _refuse(str(database_unavailable(error, consequence="")).replace("[", r"\["))
        return 1
    return code if isinstance(code, int) else 0


def entry_point() -> None:
    code = main()
    _leave_the_heap()
    sys.exit(code)


def _leave_the_heap() -> None:
    """Close the database connections, then spare the ending process its last garbage collection.

    At exit, Python runs the collector over every object the command made (SQLAlchemy's, pydantic's,
    typer's): 80 to 140 ms of each command (`benchmarks/cli_latency.py`), for memory the process is
    about to give back. `gc.freeze()` puts them out of its reach; atexit handlers and the flushing of
    standard streams still run. The engines are disposed first, so that connections end as they
    should (SQLite's checkpoint, PostgreSQL's goodbye) instead of being dropped with the process.
    """
    session = sys.modules.get("cnnq.db.session")
    if session is not None:
        session.dispose_engines()
    gc.freeze()

"""The `cnnq` command: one typer app with a sub-command module per concern."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from sqlalchemy.exc import InterfaceError, OperationalError
from typer._click.exceptions import ClickException, UsageError

from cnnq.cli import dashboard, data, db, jobs, models, results, run, stack, submit, workers
from cnnq.cli.output import err_console
from cnnq.errors import ServiceUnavailable, UserError

app = typer.Typer(
    name="cnnq",
    help="Submit CNN training, evaluation and inference jobs to Celery workers; their state lives in SQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _module in (submit, run, jobs, models, data, db, workers, stack, results, dashboard):
    _module.register(app)


def _refuse(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every refused input is one line on standard error and exit code 2."""
    try:
        code = app(args=list(argv) if argv is not None else None, prog_name="cnnq", standalone_mode=False)
    except UserError as error:
        _refuse(str(error).replace("[", r"\["))
        return 2
    except ServiceUnavailable as error:
        _refuse(str(error).replace("[", r"\["))
        return 1
    except (OperationalError, InterfaceError) as error:  # the database went away mid-command
        from cnnq.lifecycle.submit import database_unavailable

        _refuse(str(database_unavailable(error, consequence="")).replace("[", r"\["))
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
    return code if isinstance(code, int) else 0


def entry_point() -> None:
    sys.exit(main())

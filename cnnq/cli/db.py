"""`cnnq db upgrade|current`: the job database's schema."""

from __future__ import annotations

import typer

from cnnq.cli.output import console, print_json
from cnnq.settings import get_settings, mask_url

db_app = typer.Typer(help="The job database: migrate it, see its revision.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade_command() -> None:
    """Migrate the database to the newest schema (workers and `cnnq up` do this too)."""
    from cnnq.db.migrate import current_revision, upgrade_database

    upgrade_database()
    console.print(
        f"{mask_url(get_settings().database_url)} at revision {current_revision()}", highlight=False
    )


@db_app.command("current")
def current_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The database's URL (password masked) and schema revision."""
    from cnnq.db.migrate import current_revision

    url, revision = mask_url(get_settings().database_url), current_revision()
    if as_json:
        print_json({"database_url": url, "revision": revision})
    else:
        console.print(f"{url} at revision {revision or '(empty: run `cnnq db upgrade`)'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

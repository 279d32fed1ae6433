"""How the CLI speaks: rich tables for people, one JSON object for scripts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_table(table: Table) -> None:
    """On a terminal, the rich table. Into a pipe or a file, plain columns, one line per row and no
    colour, as `docker ps` prints them: what grep and awk want, and cheap (rich takes 0.1-0.15 s to
    lay out 50 jobs, a quarter of the CLI's start, measured by `benchmarks/cli_latency.py`)."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.text import Text

    def plain(cell: object) -> str:
        text = Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)
        return " ".join(text.split())

    columns = [[plain(column.header), *map(plain, column.cells)] for column in table.columns]
    widths = [max(map(len, cells)) for cells in columns]
    for row in zip(*columns, strict=True):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))

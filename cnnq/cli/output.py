"""How the CLI speaks: rich tables for people, one JSON object for scripts."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))

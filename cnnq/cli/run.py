"""`cnnq run`: a job in this process, for debugging, with the same options as `cnnq submit`."""

from __future__ import annotations

import typer

from cnnq.cli.spec_options import AnySpec, Placement, spec_commands


def _execute(spec: AnySpec, placement: Placement) -> None:
    print(spec.model_dump_json(), placement)


def register(app: typer.Typer) -> None:
    app.add_typer(spec_commands(_execute, "Run a job in this process (for debugging)."), name="run")

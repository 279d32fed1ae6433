"""The CLI's table of command modules is what the modules register, so running one loads only its own."""

from __future__ import annotations

import importlib

import pytest
import typer

from cnnq.cli.app import COMMANDS, build_app


@pytest.mark.parametrize("module", COMMANDS)
def test_each_module_registers_the_commands_the_table_names(module: str) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    importlib.import_module(f"cnnq.cli.{module}").register(app)
    assert set(typer.main.get_command(app).commands) == set(COMMANDS[module])  # type: ignore[attr-defined]


def test_one_command_builds_only_its_module_and_help_builds_all() -> None:
    everything = typer.main.get_command(build_app(None)).commands  # type: ignore[attr-defined]
    assert set(everything) == {name for names in COMMANDS.values() for name in names}
    assert set(typer.main.get_command(build_app("show")).commands) == set(COMMANDS["jobs"])  # type: ignore[attr-defined]
    assert set(typer.main.get_command(build_app("nonsense")).commands) == set(everything)  # type: ignore[attr-defined]


def test_a_database_without_cnnq_tables_gets_one_line_naming_the_fix(  # type: ignore[no-untyped-def]
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path, database_url: str
) -> None:
    """A new home's SQLite file, or a new PostgreSQL database: nothing was ever submitted to it."""
    from cnnq.db.session import dispose_engines
    from cnnq.settings import reload_settings

    home = tmp_path / "new-home"
    home.mkdir()
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{home / 'cnnq.db'}"
    monkeypatch.setenv("CNNQ_DATABASE_URL", database_url)
    monkeypatch.setenv("CNNQ_HOME", str(home))
    reload_settings()
    try:
        for command in (["jobs"], ["workers"], ["show", "abc"]):
            result = cli(*command)
            assert result.code == 1, (command, result)
            assert "has no cnnq tables yet" in result.stderr and "cnnq db upgrade" in result.stderr
            assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    finally:
        dispose_engines()
        monkeypatch.undo()
        reload_settings()

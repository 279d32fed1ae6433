"""Alembic migrations, run from code: `cnnq db upgrade`, `cnnq up` and every worker at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from cnnq.settings import get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Escape % for configparser; the URL itself is handed to env.py untouched.
    config.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    config.attributes["database_url"] = url or get_settings().database_url
    return config


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from cnnq.db.session import get_engine

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()

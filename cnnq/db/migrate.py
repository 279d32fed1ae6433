"""Alembic migrations, run from code: `cnnq db upgrade`, `cnnq up`, `cnnq submit` and every worker at start.

Importing Alembic costs a command about 0.15 s, so `upgrade_database` first compares the database's
`alembic_version` with the newest revision named in the migration files, in one query, and imports
Alembic only when they differ (or when that cannot be told: Alembic then decides, as it always did).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from cnnq.settings import get_settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(
    r"^(down_revision|revision)\b[^=\n]*=\s*(?:['\"]([^'\"]+)['\"]|None)\s*$", re.MULTILINE
)


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Escape % for configparser; the URL itself is handed to env.py untouched.
    config.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    config.attributes["database_url"] = url or get_settings().database_url
    return config


def head_revision() -> str | None:
    """The revision no migration file builds on, read from the files' `revision = "..."` and
    `down_revision = ...` lines; None when that does not name exactly one."""
    revisions: set[str] = set()
    parents: set[str | None] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((key, value or None) for key, value in _REVISION.findall(path.read_text()))
        if "revision" not in found or found["revision"] is None:
            return None
        revisions.add(found["revision"])
        parents.add(found.get("down_revision"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(url: str | None) -> bool:
    """Whether the database's schema is the newest (an error of the connection propagates, as
    Alembic's would)."""
    from sqlalchemy import inspect, text

    from cnnq.db.session import get_engine

    head = head_revision()
    if head is None:
        return False
    with get_engine(url).connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        stored = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return stored == [head]


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    if revision == "head" and _at_head(url):
        return
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from cnnq.db.session import get_engine

    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()

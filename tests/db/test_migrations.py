"""The Alembic revisions build exactly the schema that `cnnq/db/tables.py` declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from cnnq.db.migrate import alembic_config, current_revision, upgrade_database
from cnnq.db.session import get_engine
from cnnq.db.tables import Base


def test_migrations_match_the_tables(database_url: str) -> None:
    upgrade_database(database_url)
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current_revision(database_url) == head
    with get_engine(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_upgrading_twice_is_harmless(database_url: str) -> None:
    upgrade_database(database_url)
    upgrade_database(database_url)

"""The Alembic revisions build exactly the schema that `cnnq/db/tables.py` declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from cnnq.db.migrate import alembic_config, current_revision, head_revision, upgrade_database
from cnnq.db.session import get_engine
from cnnq.db.tables import metadata, owned_by_cnnq


def test_migrations_match_the_tables(database_url: str) -> None:
    upgrade_database(database_url)
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current_revision(database_url) == head
    with get_engine(database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": owned_by_cnnq})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_upgrading_twice_is_harmless(database_url: str) -> None:
    upgrade_database(database_url)
    upgrade_database(database_url)


def test_the_head_read_from_the_files_is_alembics(database_url: str) -> None:
    """`upgrade_database` skips Alembic when the database is at this head: it must be Alembic's."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head_revision() == head
    upgrade_database(database_url, revision="0001")
    upgrade_database(database_url)  # not at head: Alembic migrates it
    assert current_revision(database_url) == head

"""Alembic environment: uses cnnq's own engine so SQLite gets its pragmas and PostgreSQL psycopg 3."""

from __future__ import annotations

from alembic import context

from cnnq.db.session import get_engine
from cnnq.db.tables import metadata, owned_by_cnnq

config = context.config
url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")

with get_engine(url).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=owned_by_cnnq,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

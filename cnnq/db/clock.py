"""The one clock: the database server's. Heartbeats, progress and staleness are all stamped and compared
in SQL, so hosts whose clocks disagree (or a worker whose clock is an hour off) never misjudge a job.

`db_now()` and `db_ago(seconds)` are SQL expressions: use them as values in an UPDATE and as bounds in a
WHERE. (SQLite has no server: its clock is the host's, which is right for a database on one host.)
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from cnnq.db.tables import UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now'{shift}) || '000'"
"""Microseconds as SQLAlchemy stores them on SQLite, so stored and computed times compare as text."""


class db_now(FunctionElement[datetime]):
    """The database server's current time (UTC)."""

    type = UTCDateTime()
    inherit_cache = True


class db_ago(FunctionElement[datetime]):
    """The database server's time `seconds` ago: `db_ago(60)`."""

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        super().__init__()


@compiles(db_now)
def _now_default(element: Any, compiler: Any, **kw: Any) -> str:
    return "statement_timestamp()"


@compiles(db_now, "sqlite")
def _now_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return _SQLITE_NOW.format(shift="")


@compiles(db_ago)
def _ago_default(element: db_ago, compiler: Any, **kw: Any) -> str:
    return f"(statement_timestamp() - make_interval(secs => {element.seconds!r}))"


@compiles(db_ago, "sqlite")
def _ago_sqlite(element: db_ago, compiler: Any, **kw: Any) -> str:
    return _SQLITE_NOW.format(shift=f", '-{element.seconds!r} seconds'")


def read_db_now(session: Connection | Session) -> datetime:
    """The database server's time, for reports that compare Python-side (`RUNNING (lost)`, ages)."""
    value = session.scalar(select(db_now()))
    assert value is not None
    return value

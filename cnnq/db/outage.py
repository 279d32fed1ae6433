"""Waiting out a database outage: a PostgreSQL restart, a failover, a dropped connection.

`retrying` repeats a unit of work (one session, start to commit) while the database does not answer,
with backoff, until its patience runs out; then it raises `DatabaseUnavailable`. Only errors of the
connection are retried: a constraint or a bug fails at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cnnq.errors import ServiceUnavailable
from cnnq.settings import get_settings, mask_url

log = logging.getLogger(__name__)

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database did not answer for longer than the caller would wait."""


def is_outage(error: BaseException) -> bool:
    """A connection that failed or was lost (and, on SQLite, a database locked past its busy timeout)."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def database_unavailable(error: BaseException, consequence: str = "nothing was queued") -> ServiceUnavailable:
    """One line that names the (masked) database that did not answer."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return ServiceUnavailable(
        f"the database {mask_url(get_settings().database_url)} does not answer ({reason}); "
        f"{consequence + '. ' if consequence else ''}Check CNNQ_DATABASE_URL, or try again when it is back"
    )


@contextmanager
def refused_while_out(consequence: str = "nothing was queued") -> Iterator[None]:
    """Turn a database outage inside the block into one `ServiceUnavailable` line (`database_unavailable`);
    any other error passes through as it is."""
    try:
        yield
    except Exception as error:
        if is_outage(error):
            raise database_unavailable(error, consequence) from None
        raise


def retrying(action: Callable[[], T], *, patience: float, what: str, since: float | None = None) -> T:
    """`action()`, again and again while the database is out, for `patience` seconds from `since`
    (default: the first failure). Backoff from 0.2 s to 5 s between tries."""
    delay = 0.2
    while True:
        try:
            return action()
        except Exception as error:
            if not is_outage(error):
                raise
            now = time.monotonic()
            since = now if since is None else since
            if now - since > patience:
                raise DatabaseUnavailable(
                    f"the database did not answer for {now - since:.0f}s while {what} "
                    f"({type(error).__name__}); waited CNNQ_DB_OUTAGE_SECONDS={patience:.0f}"
                ) from error
            log.warning("database unavailable while %s (%s); trying again in %.1fs", what, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

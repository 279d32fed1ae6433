"""How often live pages redraw: every two seconds while something is queued or running, else never."""

from __future__ import annotations

from datetime import timedelta

LIVE_REFRESH = timedelta(seconds=2)


def refresh_interval(live: bool) -> timedelta | None:
    return LIVE_REFRESH if live else None

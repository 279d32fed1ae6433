"""One colour per job status, for tables and charts alike."""

from __future__ import annotations

STATUS_COLORS = {
    "SUCCEEDED": "seagreen",
    "RUNNING": "royalblue",
    "QUEUED": "gray",
    "FAILED": "crimson",
    "CANCELLED": "darkorange",
    "PRUNED": "slateblue",
}


def status_style(status: object) -> str:
    """CSS for a table cell holding `status` (pandas' `Styler.map`)."""
    color = STATUS_COLORS.get(str(status))
    return f"color: {color}; font-weight: 600" if color else ""

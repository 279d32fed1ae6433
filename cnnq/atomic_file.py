"""Files that appear complete or not at all: written beside the target, then renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(target: Path, before_replace: Callable[[], None] | None = None) -> Iterator[str]:
    """A temporary file name beside `target` that replaces it when the block ends without an error,
    for writers that take a path. Racing writers each write their own; the last rename wins.
    `before_replace` runs last of all, and may raise to keep `target` as it was (a fenced writer)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        yield temporary
        if before_replace is not None:
            before_replace()
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(target: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """An open file that replaces `target` only when the block ends without an error."""
    text = {"newline": "", "encoding": "utf-8"} if "b" not in mode else {}
    with atomic_path(target) as temporary, open(temporary, mode, **text) as file:
        yield file

"""Files that appear complete or not at all: written beside the target, then renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(target: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """An open file that replaces `target` only when the block ends without an error."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        text = {"newline": "", "encoding": "utf-8"} if "b" not in mode else {}
        with os.fdopen(handle, mode, **text) as file:
            yield file
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

"""Small inline previews of input images for tables (as data URLs, so that no file is served)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from cnnq.data.decode import ImageDecodeError, load_image

THUMBNAIL_SIZE = 96


def thumbnail_url(path: str, size: int = THUMBNAIL_SIZE) -> str | None:
    """A PNG data URL of the image at `path`, or None when it cannot be read."""
    try:
        image = load_image(Path(path), min_size=size)
    except ImageDecodeError:
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

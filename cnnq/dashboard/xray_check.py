"""Reading an uploaded image for the X-ray check page, which scores it with `cnnq.jobs.gradcam`.

The upload is written only inside a temporary directory (the decoder reads files), removed as soon as
the image is decoded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePath

from PIL import Image

from cnnq.data.decode import ImageDecodeError, ImageTooLarge, load_image
from cnnq.errors import UserError

_KEPT_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"}


def decode_upload(name: str, data: bytes) -> Image.Image:
    """The uploaded bytes as an image, or a one-line UserError saying why they are not one."""
    suffix = PurePath(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="cnnq-upload-") as directory:
        path = Path(directory) / f"upload{suffix if suffix in _KEPT_SUFFIXES else ''}"
        path.write_bytes(data)
        try:
            return load_image(path)  # refuses an image over CNNQ_MAX_IMAGE_PIXELS from its header
        except ImageTooLarge as error:
            raise UserError(error.advice(name)) from None
        except ImageDecodeError as error:
            raise UserError(
                f"{name} is not an image cnnq can read ({error.reason}); upload a PNG, JPEG or DICOM file"
            ) from None

"""Scoring one uploaded image with a trained model, with its Grad-CAM heatmap: the X-ray check page.

The label comes from the same `Decision` as bulk inference, so one image scores here as it would in a
bulk job. The upload is written only inside a temporary directory (the decoder reads files), removed
as soon as the image is decoded. Torch is imported only once an image is scored, so that opening the page
stays quick.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from PIL import Image

from cnnq.data.decode import ImageDecodeError, ImageTooLarge, load_image
from cnnq.errors import UserError

if TYPE_CHECKING:
    from cnnq.jobs.checkpoint import LoadedModel

_KEPT_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class XrayScore:
    label: str
    probability: float
    """The probability of `label`."""
    probabilities: dict[str, float]
    threshold: float | None
    """The threshold on the positive class's probability (two classes); None: the most probable class."""
    positive_class: str | None
    image: Image.Image
    heatmap_overlay: Image.Image


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


def score_image(image: Image.Image, loaded: LoadedModel, name: str = "upload") -> XrayScore:
    from cnnq.jobs.gradcam import explain_image, overlay  # torch: imported when an image is scored

    explained = explain_image(loaded, image, name=name)
    return XrayScore(
        label=explained.label,
        probability=explained.probabilities[explained.label],
        probabilities=explained.probabilities,
        threshold=explained.threshold,
        positive_class=explained.positive_class,
        image=image,
        heatmap_overlay=overlay(image, explained.heatmap),
    )

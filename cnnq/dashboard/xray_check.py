"""Scoring one uploaded image with a trained model, with its Grad-CAM heatmap: the X-ray check page.

The label comes from the same `Decision` as bulk inference, so one image scores here as it would in a
bulk job. The upload is written only inside a temporary directory (the decoder reads files), removed
as soon as the image is decoded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePath

import torch
from PIL import Image

from cnnq.data.decode import ImageDecodeError, load_image
from cnnq.data.transforms import preprocess_image
from cnnq.errors import UserError
from cnnq.jobs.checkpoint import LoadedModel
from cnnq.jobs.gradcam import gradcam, overlay
from cnnq.jobs.infer import Decision

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
            return load_image(path)
        except ImageDecodeError as error:
            raise UserError(
                f"{name} is not an image cnnq can read ({error.reason}); upload a PNG, JPEG or DICOM file"
            ) from None


def score_image(image: Image.Image, loaded: LoadedModel, name: str = "upload") -> XrayScore:
    tensor = preprocess_image(
        image,
        in_channels=loaded.in_channels,
        image_size=loaded.image_size,
        mean=loaded.mean,
        std=loaded.std,
    )
    with torch.no_grad():
        logits = loaded.model(tensor.unsqueeze(0).to(loaded.device))
    probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
    decision = Decision.for_model(loaded, None)
    row = decision.rows([name], probabilities)[0]
    assert row.label is not None and row.probabilities is not None
    heatmap = gradcam(loaded, tensor, class_index=decision.classes.index(row.label))
    return XrayScore(
        label=row.label,
        probability=row.probabilities[row.label],
        probabilities=row.probabilities,
        threshold=decision.threshold,
        positive_class=decision.positive_class,
        image=image,
        heatmap_overlay=overlay(image, heatmap),
    )

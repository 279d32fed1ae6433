"""Reading one image file of any kind a scanner archive holds, into an 8-bit PIL image.

PNG, JPEG (and whatever else Pillow reads) in 8 or 16 bits, grayscale, RGB or CMYK, and DICOM
(`.dcm`, through pydicom, with its modality and VOI lookup tables). The result is mode "L" or "RGB";
`cnnq.data.transforms.preprocess_image` takes it from there. Anything that cannot be read raises
`ImageDecodeError` with a short reason that ends up in a flagged prediction row.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

_DICOM_SUFFIXES = {".dcm", ".dicom"}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class ImageDecodeError(Exception):
    """An input that is not a readable image; `reason` is short enough for a table cell."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_image(path: str | Path, *, min_size: int | None = None) -> Image.Image:
    """The image at `path` as an 8-bit "L" (grayscale) or "RGB" PIL image.

    `min_size`: the caller will shrink the image to this square size anyway, so a large JPEG may be
    decoded at a reduced scale (libjpeg's DCT scaling), never below this size.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(132)
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError("not an image: a folder") from None
    except OSError as error:
        raise ImageDecodeError(f"unreadable file: {error.strerror or error}") from None
    if not head:
        raise ImageDecodeError("empty file")
    if head[128:132] == b"DICM" or path.suffix.lower() in _DICOM_SUFFIXES:
        return _load_dicom(path, has_preamble=head[128:132] == b"DICM")
    return _load_pillow(path, head, min_size)


def _load_pillow(path: Path, head: bytes, min_size: int | None) -> Image.Image:
    try:
        with Image.open(path) as image:
            if image.format == "JPEG" and min_size is not None:
                image.draft(image.mode, (min_size, min_size))
            image.load()
            return to_8bit(image)
    except UnidentifiedImageError:
        if head.startswith(_IMAGE_MAGIC):
            raise ImageDecodeError("truncated image") from None
        raise ImageDecodeError(f"not an image: {_describe(head)}") from None
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"image too large: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error)
        if "truncat" in message.lower() or isinstance(error, EOFError):
            raise ImageDecodeError("truncated image") from None
        raise ImageDecodeError(f"corrupt image: {message[:120]}") from None


def _describe(head: bytes) -> str:
    """What a file that is not an image seems to be, from its first bytes."""
    if head.startswith(b"%PDF"):
        return "PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "zip archive"
    if all(byte >= 32 or byte in b"\t\n\r\f" for byte in head):
        return "text file"
    return "unknown format"


def to_8bit(image: Image.Image) -> Image.Image:
    """Any Pillow mode as "L" or "RGB", scaling deeper-than-8-bit data over its range instead of clipping."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image, dtype=np.float64)))
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    if image.mode == "P":
        return image.convert("RGB")
    if image.mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    if image.mode.startswith("BGR;"):
        return image.convert("RGB")
    raise ImageDecodeError(f"unsupported image mode {image.mode}")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """An array of any range to 8 bits, its minimum black and its maximum white."""
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _load_dicom(path: Path, *, has_preamble: bool) -> Image.Image:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path, force=not has_preamble)
    except InvalidDicomError:
        raise ImageDecodeError("not an image: not a DICOM file") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        if isinstance(error, EOFError) or "end of file" in str(error).lower():
            raise ImageDecodeError("truncated image") from None
        raise ImageDecodeError(f"not an image: unreadable DICOM ({_short(error)})") from None
    if "PixelData" not in dataset:
        if not has_preamble and "SOPClassUID" not in dataset:
            raise ImageDecodeError("not an image: not a DICOM file")
        raise ImageDecodeError("unsupported DICOM: no pixel data")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageDecodeError(f"unsupported DICOM: {frames} frames (cnnq scores single images)")
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = dataset.pixel_array
    except (
        ValueError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        AttributeError,
        KeyError,
        TypeError,
    ) as e:
        if isinstance(e, EOFError) or any(
            word in str(e).lower() for word in ("less than expected", "truncat")
        ):
            raise ImageDecodeError("truncated image") from None
        raise ImageDecodeError(f"unsupported DICOM: {_short(e)}") from None

    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if pixels.ndim != 2:
            raise ImageDecodeError(f"unsupported DICOM: grayscale pixel data of shape {pixels.shape}")
        values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype(np.float64)
        if photometric == "MONOCHROME1":  # low values are white: invert so that bone is bright
            values = values.max() + values.min() - values
        return Image.fromarray(_scale_to_uint8(values))
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        # pydicom hands YBR data over already converted to RGB.
        if pixels.dtype != np.uint8:
            pixels = _scale_to_uint8(pixels.astype(np.float64))
        return Image.fromarray(np.ascontiguousarray(pixels))
    raise ImageDecodeError(f"unsupported DICOM: photometric interpretation {photometric}")


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]

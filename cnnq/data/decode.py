"""Reading one image file of any kind a scanner archive holds, into an 8-bit PIL image.

PNG, JPEG (and whatever else Pillow reads) in 8 or 16 bits, grayscale, RGB or CMYK, and DICOM
(`.dcm`, through pydicom, with its modality and VOI lookup tables). The result is mode "L" or "RGB";
`cnnq.data.transforms.preprocess_image` takes it from there. Anything that cannot be read raises
`ImageDecodeError` with a short reason that ends up in a flagged prediction row.

Nothing is decoded before its size is known: an image whose header declares more pixels than
`CNNQ_MAX_IMAGE_PIXELS` raises `ImageTooLarge` ("too large: 13000x13000") without a byte of its
pixels read, and a DICOM whose header declares more pixel data than the file holds is refused as
truncated, so one poisoned file in an archive is a flagged row, never an out-of-memory kill.
Pillow's own guard (`Image.MAX_IMAGE_PIXELS`, which warns above its limit and raises above twice
it) is set to the same cap.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnq.settings import get_settings

_DICOM_SUFFIXES = {".dcm", ".dicom"}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class ImageDecodeError(Exception):
    """An input that is not a readable image; `reason` is short enough for a table cell."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageTooLarge(ImageDecodeError):
    """An image whose header declares more pixels than the cap; refused before it is decoded."""

    def __init__(self, width: int, height: int, cap: int, frames: int = 1) -> None:
        shape = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
        super().__init__(f"too large: {shape}")
        self.width, self.height, self.frames, self.cap = width, height, frames, cap

    def advice(self, name: str) -> str:
        """One line for a person: what is wrong with `name` and what to do about it."""
        pixels = self.width * self.height * self.frames
        return (
            f"{name} is too large: {self.reason.removeprefix('too large: ')} ({pixels:,} pixels, over "
            f"CNNQ_MAX_IMAGE_PIXELS={self.cap:,}); give a smaller image or raise CNNQ_MAX_IMAGE_PIXELS"
        )


def pixel_cap() -> int:
    """`CNNQ_MAX_IMAGE_PIXELS`, also made Pillow's limit so that Pillow's guard and cnnq's agree."""
    cap = get_settings().max_image_pixels
    Image.MAX_IMAGE_PIXELS = cap
    return cap


def check_pixels(width: int, height: int, frames: int = 1, *, cap: int | None = None) -> None:
    """Raise `ImageTooLarge` if an image of this size (from its header) is over the cap."""
    cap = pixel_cap() if cap is None else cap
    if width * height * max(frames, 1) > cap:
        raise ImageTooLarge(width, height, cap, frames)


def load_image(path: str | Path, *, min_size: int | None = None) -> Image.Image:
    """The image at `path` as an 8-bit "L" (grayscale) or "RGB" PIL image.

    `min_size`: the caller will shrink the image to this square size anyway, so a large JPEG may be
    decoded at a reduced scale (libjpeg's DCT scaling), never below this size.
    """
    path = Path(path)
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError("not an image: a folder") from None
    except OSError as error:
        raise ImageDecodeError(f"unreadable file: {error.strerror or error}") from None
    with file:  # one open for the sniffing and the decoding (a tenth of a small PNG's cost)
        try:
            head = file.read(132)
        except OSError as error:
            raise ImageDecodeError(f"unreadable file: {error.strerror or error}") from None
        if not head:
            raise ImageDecodeError("empty file")
        if head[128:132] == b"DICM" or path.suffix.lower() in _DICOM_SUFFIXES:
            return _load_dicom(path, has_preamble=head[128:132] == b"DICM")
        file.seek(0)
        return _load_pillow(file, path, head, min_size)


def open_image(path: str | Path, file: BinaryIO | None = None) -> Image.Image:
    """`Image.open` (lazy: it reads the header only) of `path`, or of `file` already open on it,
    refusing an image over the pixel cap with `ImageTooLarge` before anything is decoded. Pillow's
    other errors pass through."""
    path = Path(path)
    cap = pixel_cap()
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; those are refused just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path if file is None else file)
    except Image.DecompressionBombError:  # over twice the cap: Pillow refuses before telling the size
        size = _declared_size(path)
        if size is None:
            raise ImageDecodeError(f"too large: over {2 * cap} pixels") from None
        raise ImageTooLarge(*size, cap) from None
    try:
        check_pixels(*image.size, cap=cap)
    except ImageTooLarge:
        image.close()
        raise
    return image


def _load_pillow(file: BinaryIO, path: Path, head: bytes, min_size: int | None) -> Image.Image:
    try:
        with open_image(path, file) as image:
            if image.format == "JPEG" and min_size is not None:
                image.draft(image.mode, (min_size, min_size))
            image.load()
            return to_8bit(image)
    except UnidentifiedImageError:
        if head.startswith(_IMAGE_MAGIC):
            raise ImageDecodeError("truncated image") from None
        raise ImageDecodeError(f"not an image: {_describe(head)}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        message = str(error)
        if "truncat" in message.lower() or isinstance(error, EOFError):
            raise ImageDecodeError("truncated image") from None
        raise ImageDecodeError(f"corrupt image: {message[:120]}") from None


def _declared_size(path: Path) -> tuple[int, int] | None:
    """The size a file's header declares, read by the Pillow plugin that claims it (as `Image.open`
    picks one) but without Pillow's size guard, which raises before saying what the size is."""
    Image.init()
    try:
        with path.open("rb") as file:
            prefix = file.read(16)
            for format_id in Image.ID:
                factory, accept = Image.OPEN[format_id]
                claimed = accept(prefix) if accept else True
                if not claimed or isinstance(claimed, str):
                    continue
                file.seek(0)
                try:
                    return factory(file, str(path)).size
                except Exception:  # not this format after all: try the next, as Image.open does
                    continue
    except OSError:
        return None
    return None


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
        return Image.fromarray(_scale_to_uint8(np.asarray(image)))
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
    """An array of any range to 8 bits, its minimum black and its maximum white.

    In float32, in place: a 50-megapixel 16-bit image needs 200 MB on the way, not float64's 400 MB
    and its temporaries (float32 holds every 16-bit value exactly).
    """
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = np.asarray(values, dtype=np.float32) - np.float32(low)
    scaled *= np.float32(255.0 / (high - low))
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def _load_dicom(path: Path, *, has_preamble: bool) -> Image.Image:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        _check_dicom_header(path, has_preamble=has_preamble)
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
        values = np.asarray(apply_voi_lut(apply_modality_lut(pixels, dataset), dataset), dtype=np.float32)
        if photometric == "MONOCHROME1":  # low values are white: invert so that bone is bright
            values = values.max() + values.min() - values
        return Image.fromarray(_scale_to_uint8(values))
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        # pydicom hands YBR data over already converted to RGB.
        if pixels.dtype != np.uint8:
            pixels = _scale_to_uint8(pixels)
        return Image.fromarray(np.ascontiguousarray(pixels))
    raise ImageDecodeError(f"unsupported DICOM: photometric interpretation {photometric}")


_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
"""(7FE0,0010) Pixel Data, as little- and big-endian files write the tag."""


def _check_dicom_header(path: Path, *, has_preamble: bool) -> None:
    """Refuse a DICOM by its header alone, before its pixel data is read: over the pixel cap
    (`ImageTooLarge`), or declaring more uncompressed pixel data than the file holds (a truncated file
    or a lying header: decoding it would allocate the declared size, then fail)."""
    import pydicom

    with path.open("rb") as file:
        header = pydicom.dcmread(file, force=not has_preamble, stop_before_pixels=True)
        pixels_at = file.tell()  # pydicom stops at the Pixel Data element's tag
        tag = file.read(4)
        size = file.seek(0, 2)
    rows, columns = _int_or(header.get("Rows"), 0), _int_or(header.get("Columns"), 0)
    if not rows or not columns:
        return  # not an image header: the full read says why
    frames = _int_or(header.get("NumberOfFrames"), 1)
    check_pixels(columns, rows, frames)
    syntax = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
    if tag not in _PIXEL_DATA_TAGS or (syntax is not None and (syntax.is_encapsulated or syntax.is_deflated)):
        return  # no pixel data, or compressed pixel data of no fixed size
    bits = rows * columns * max(frames, 1) * _int_or(header.get("SamplesPerPixel"), 1)
    declared = (bits * _int_or(header.get("BitsAllocated"), 16) + 7) // 8
    held = size - pixels_at - 8  # at least 8 bytes of the element are its tag and length
    if held < declared:
        raise ImageDecodeError(
            f"truncated image: the DICOM header declares {declared} bytes of pixel data, "
            f"the file holds {held}"
        )


def _int_or(value: object, default: int) -> int:
    """A DICOM integer attribute (IS values arrive as strings), or `default` when absent or odd."""
    try:
        return int(value) if value not in (None, "") else default  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:120]

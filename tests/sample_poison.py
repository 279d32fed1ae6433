"""Poison inputs for tests: real image files that declare far more pixels than any job should decode.

`write_huge_png` writes a genuine, valid PNG of any size (by default 16-bit grayscale, as a scanner's
archive holds) row by row, so the test never holds the image in memory: a 13000x13000 16-bit PNG
takes under a second and about 1.5 MB on disk, and would take 338 MB as pixels (1.35 GB widened
to float64) if anything decoded it. `write_lying_dicom` writes a small, well-formed DICOM whose
header declares a huge image over a few bytes of pixel data.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from tests.sample_dicom import dicom_header


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_huge_png(path: Path, width: int, height: int, *, bit_depth: int = 16) -> Path:
    """A valid, all-black grayscale PNG of `width` x `height` at `bit_depth` bits (8 or 16)."""
    row = b"\0" * (1 + width * bit_depth // 8)  # a filter byte, then the row's samples
    compressor = zlib.compressobj(1)
    idat = b"".join([compressor.compress(row) for _ in range(height)] + [compressor.flush()])
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)  # grayscale, no interlace
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    return path


def write_lying_dicom(
    path: Path, rows: int = 65535, columns: int = 65535, *, frames: int = 1, pixel_bytes: int = 64
) -> Path:
    """A 16-bit grayscale DICOM whose header declares `rows` x `columns` (x `frames`) pixels, holding
    only `pixel_bytes` bytes of pixel data."""
    dataset = dicom_header(path)
    dataset.Modality = "CR"
    dataset.PatientID = "TEST"
    dataset.Rows, dataset.Columns = rows, columns
    if frames > 1:
        dataset.NumberOfFrames = frames
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.SamplesPerPixel = 1
    dataset.BitsAllocated = 16
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = b"\0" * pixel_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path

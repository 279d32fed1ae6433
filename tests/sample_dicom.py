"""Real DICOM files for tests: uncompressed Explicit VR Little Endian, written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def dicom_header(path: Path) -> FileDataset:
    """An uncompressed secondary-capture DICOM dataset with its file meta, and no pixels yet."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return dataset


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    bits_stored: int = 12,
) -> Path:
    """A single-frame grayscale (2-D `pixels`, uint16) or RGB (H x W x 3, uint8) DICOM file.

    `slope`/`intercept` become RescaleSlope/RescaleIntercept (the modality LUT); `window` is
    (center, width) of a VOI window.
    """
    dataset = dicom_header(path)
    dataset.Modality = "CR"
    dataset.PatientID = "TEST"
    dataset.Rows, dataset.Columns = pixels.shape[:2]
    dataset.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        dataset.SamplesPerPixel = 3
        dataset.PlanarConfiguration = 0
        dataset.BitsAllocated = dataset.BitsStored = 8
        dataset.HighBit = 7
        pixels = pixels.astype(np.uint8)
    else:
        dataset.SamplesPerPixel = 1
        dataset.BitsAllocated = 16
        dataset.BitsStored = bits_stored
        dataset.HighBit = bits_stored - 1
        pixels = pixels.astype(np.uint16)
    dataset.PixelRepresentation = 0
    if slope is not None or intercept is not None:
        dataset.RescaleSlope = slope if slope is not None else 1.0
        dataset.RescaleIntercept = intercept if intercept is not None else 0.0
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    dataset.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path

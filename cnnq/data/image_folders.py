"""Image files in class folders (`folder` and `xray` sets): indexing, checking, and batches via a DataLoader.

Every file is checked once when the set is indexed (PNG: PIL verify, which walks every chunk and
its CRC; JPEG: a decode at 1/8 scale, which still reads the whole stream so a truncated file
fails; anything else: a full decode). Unreadable files are left out and listed with the reason.
Each file is decoded exactly as inference decodes it (`decode.load_image(path, min_size=image_size)`
-> L/RGB -> resize -> uint8): once for the whole job when the set fits in memory
(`memory_cache`), else once per epoch in DataLoader workers (`LoaderBatchSource`); normalising and
augmenting happen on the whole batch on the device (`BatchFinisher`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.dataloader import default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from cnnq.data.bundle import BatchFinisher
from cnnq.data.decode import ImageDecodeError, load_image, open_image
from cnnq.data.splits import batch_bounds, epoch_order
from cnnq.data.transforms import image_to_uint8


@dataclass
class FileList:
    """Image files and their class indices, in a fixed order."""

    paths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, indices: Sequence[int] | np.ndarray) -> FileList:
        return FileList([self.paths[i] for i in indices], self.labels[np.asarray(indices, dtype=np.int64)])

    def __add__(self, other: FileList) -> FileList:
        return FileList(self.paths + other.paths, np.concatenate([self.labels, other.labels]))


def class_names(directory: Path) -> list[str]:
    """Class folder names of an ImageFolder tree, sorted (torchvision's rule)."""
    return find_classes(str(directory))[0]


def list_files(directory: Path, classes: list[str]) -> FileList:
    """The image files under `directory/<class>/` for the given classes (missing classes: none)."""
    class_to_idx = {name: i for i, name in enumerate(classes) if (directory / name).is_dir()}
    samples = make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    return FileList([path for path, _ in samples], np.array([label for _, label in samples], dtype=np.int64))


def unreadable_reason(path: str) -> str | None:
    """Why PIL cannot read this image, or None when it can (the cheap check described above).

    An image over `CNNQ_MAX_IMAGE_PIXELS` is refused from its header ("too large: WxH"), unread.
    """
    try:
        with open_image(path) as image:
            if image.format == "PNG":
                image.verify()
                return None
            if image.format == "JPEG":
                image.draft(image.mode, (1, 1))
            image.load()
    except ImageDecodeError as error:
        return error.reason
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        message = str(error).replace(f" '{path}'", "").replace(path, "the file")
        return f"{type(error).__name__}: {message}"
    return None


def drop_unreadable(files: FileList, workers: int) -> tuple[FileList, list[tuple[str, str]]]:
    """(readable files, [(path, reason)] of the others)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(unreadable_reason, files.paths))
    keep = [i for i, reason in enumerate(reasons) if reason is None]
    skipped = [
        (path, reason) for path, reason in zip(files.paths, reasons, strict=True) if reason is not None
    ]
    return files.take(keep), skipped


class DecodedImages(Dataset):
    """Decodes one file per item to a uint8 CHW tensor; an item that fails decodes to None."""

    def __init__(self, files: FileList, *, in_channels: int, image_size: int) -> None:
        self.paths = files.paths
        self.labels = files.labels.tolist()
        self.in_channels = in_channels
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        try:
            image = load_image(self.paths[index], min_size=self.image_size)
            pixels = image_to_uint8(image, in_channels=self.in_channels, image_size=self.image_size)
        except Exception:  # changed on disk since it was checked: leave it out of this batch
            return None
        return pixels, self.labels[index]


def collate_decoded(items: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor] | None:
    decoded = [item for item in items if item is not None]
    return default_collate(decoded) if decoded else None


class _PassBatches:
    """The batch sampler of a DataLoader: the index lists of the pass about to start."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LoaderBatchSource:
    """A split of image files, decoded by `num_workers` DataLoader workers (kept for the whole job)."""

    def __init__(
        self, files: FileList, *, batch_size: int, num_workers: int, in_channels: int, finisher: BatchFinisher
    ) -> None:
        self.files = files
        self.finisher = finisher
        self.bounds = batch_bounds(len(files), batch_size)
        self._sampler = _PassBatches([])
        self._loader = DataLoader(
            DecodedImages(files, in_channels=in_channels, image_size=finisher.image_size),
            batch_sampler=self._sampler,
            num_workers=num_workers,
            collate_fn=collate_decoded,
            pin_memory=finisher.device.type == "cuda",
            persistent_workers=num_workers > 0,
        )

    @property
    def num_samples(self) -> int:
        return len(self.files)

    def __len__(self) -> int:
        return len(self.bounds)

    def batches(self, epoch: int | None, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        bounds = self.bounds[skip:]
        if not bounds:
            return
        order = (
            list(range(self.num_samples))
            if epoch is None
            else epoch_order(self.num_samples, self.finisher.seed, epoch).tolist()
        )
        self._sampler.batches = [order[start:end] for start, end in bounds]
        params = self.finisher.pass_params(self.num_samples, epoch)
        device = self.finisher.device
        non_blocking = device.type == "cuda"
        for (start, _), batch in zip(bounds, self._loader, strict=True):
            if batch is None:
                continue
            images, labels = batch
            batch_params = params[start : start + len(labels)] if params is not None else None
            images = images.to(device, non_blocking=non_blocking)
            labels = labels.to(device, non_blocking=non_blocking)
            yield self.finisher.finish(images, batch_params), labels

"""Batches of images decoded in DataLoader worker processes, with the flagged inputs kept.

Workers hand over uint8 tensors of the model's channels and size (a quarter of the bytes of floats);
the job normalises each batch in one fused operation (`cnnq.data.transforms`, the same path as
training). An input that cannot be decoded does not stop the batch: it travels beside the images as
(index, error), so the job writes it as a flagged row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from cnnq.data.decode import ImageDecodeError, load_image
from cnnq.data.transforms import image_to_uint8, normalization_tensors, normalize_batch


@dataclass(frozen=True)
class Preprocessing:
    """What the model expects of an image (from its model file)."""

    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW from the workers -> the model's float input, on the images' device."""
        scale, shift = normalization_tensors(self.mean, self.std, images.device)
        return normalize_batch(images, scale, shift)


Item = tuple[int, torch.Tensor | None, str | None]


class ImageFiles(Dataset[Item]):
    """Item i is (i, CHW uint8 tensor, None), or (i, None, reason) when the file is not a readable image."""

    def __init__(self, paths: Sequence[str], preprocessing: Preprocessing) -> None:
        self.paths = paths
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item:
        p = self.preprocessing
        try:
            image = load_image(self.paths[index], min_size=p.image_size)
            tensor = image_to_uint8(image, in_channels=p.in_channels, image_size=p.image_size)
        except ImageDecodeError as error:
            return index, None, error.reason
        except Exception as error:  # one odd file must never end a 100,000-image job
            return index, None, f"cannot decode: {type(error).__name__}: {str(error)[:100]}"
        return index, tensor, None


@dataclass
class ImageBatch:
    indices: list[int]
    """Positions (in the job's input list) of the rows of `images`."""
    images: torch.Tensor | None
    flagged: list[tuple[int, str]]
    """(position, error) of each input that could not be decoded."""

    def pin_memory(self) -> ImageBatch:
        if self.images is not None:
            self.images = self.images.pin_memory()
        return self


def collate_keeping_errors(items: Sequence[Item]) -> ImageBatch:
    good = [(index, tensor) for index, tensor, _ in items if tensor is not None]
    flagged = [(index, error or "unreadable") for index, tensor, error in items if tensor is None]
    images = torch.stack([tensor for _, tensor in good]) if good else None
    return ImageBatch([index for index, _ in good], images, flagged)


def image_batches(
    paths: Sequence[str],
    preprocessing: Preprocessing,
    *,
    batch_size: int,
    num_workers: int,
    pin_memory: bool = False,
) -> Iterator[ImageBatch]:
    """The inputs in order, `batch_size` at a time, decoded by `num_workers` processes (0: in this one)."""
    workers = min(num_workers, -(-len(paths) // batch_size))  # no more processes than batches
    loader = DataLoader(
        ImageFiles(paths, preprocessing),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_keeping_errors,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)

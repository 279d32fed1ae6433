"""Folder and X-ray sets decoded once into uint8 tensors, when they fit within `CNNQ_CACHE_MEMORY`.

A cached set then trains as MNIST does (`TensorBatchSource`): no file read, no PIL and no worker
process per epoch. Every file is decoded by the very code that decodes it when streaming
(`DecodedImages`), in DataLoader workers, so a cached set and a streamed one give the same batches
for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from cnnq.data.bundle import BatchFinisher
from cnnq.data.image_folders import DecodedImages, FileList
from cnnq.data.tensor_sets import TensorBatchSource

_DECODE_BATCH = 256


def decoded_bytes(count: int, channels: int, image_size: int) -> int:
    """Bytes of `count` images held as uint8 channels x size x size."""
    return count * channels * image_size * image_size


class _Numbered(Dataset):
    """(index, pixels or None) of each file, so that the decoded ones land in their place."""

    def __init__(self, images: DecodedImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None]:
        item = self.images[index]
        return index, None if item is None else item[0]


def _collate_numbered(items: list[tuple[int, Tensor | None]]) -> tuple[Tensor, Tensor | None]:
    decoded = [(index, pixels) for index, pixels in items if pixels is not None]
    if not decoded:
        return torch.empty(0, dtype=torch.int64), None
    return torch.tensor([index for index, _ in decoded]), torch.stack([pixels for _, pixels in decoded])


def decode_files(
    splits: Sequence[FileList], *, in_channels: int, image_size: int, workers: int
) -> tuple[list[tuple[Tensor, FileList]], list[tuple[str, str]]]:
    """Each split as (uint8 images N x C x S x S, the files they came from), decoded in one pass,
    plus (path, reason) of any file that could not be decoded (changed since it was checked)."""
    files = FileList([], np.zeros(0, dtype=np.int64))
    for split in splits:
        files = files + split
    images = torch.empty((len(files), in_channels, image_size, image_size), dtype=torch.uint8)
    decoded = np.zeros(len(files), dtype=bool)
    loader = DataLoader(
        _Numbered(DecodedImages(files, in_channels=in_channels, image_size=image_size)),
        batch_size=_DECODE_BATCH,
        num_workers=workers if len(files) > _DECODE_BATCH else 0,
        collate_fn=_collate_numbered,
    )
    for indices, pixels in loader:
        if pixels is not None:
            images[indices] = pixels
            decoded[indices.numpy()] = True
    failed = [(files.paths[i], "could not be decoded when cached") for i in np.flatnonzero(~decoded)]
    held, start = [], 0
    for split in splits:
        kept = np.flatnonzero(decoded[start : start + len(split)])
        if len(kept) == len(split):  # a view: every split shares the one tensor
            held.append((images[start : start + len(split)], split))
        else:
            held.append((images[torch.from_numpy(kept + start)], split.take(kept)))
        start += len(split)
    return held, failed


class HeldFiles(TensorBatchSource):
    """A split of image files held decoded: batches as `TensorBatchSource`'s, and the files they are."""

    def __init__(
        self,
        images: Tensor,
        files: FileList,
        *,
        batch_size: int,
        finisher: BatchFinisher,
        store: torch.device | None = None,
    ) -> None:
        super().__init__(
            images, torch.from_numpy(files.labels), batch_size=batch_size, finisher=finisher, store=store
        )
        self.files = files

"""MNIST and CIFAR-10 held whole as one uint8 tensor on the device: no PIL, no per-sample Python.

A training batch is one gather by a seeded permutation, one float conversion with a fused
normalisation, and (when asked) one resize and one warp for the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import MNIST

from cnnq.data import cifar_pickles
from cnnq.data.bundle import BatchFinisher
from cnnq.data.catalog import CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES, cifar10_folder
from cnnq.data.splits import batch_bounds, epoch_order

# ITU-R 601-2 luma in 16-bit fixed point, exactly as PIL's convert("L") computes it.
_LUMA = (19595, 38470, 7471)


def read_mnist(root: Path, train: bool) -> tuple[Tensor, Tensor, list[str]]:
    """(images (N, 1, 28, 28) uint8, labels (N,) int64, class names) from torchvision's IDX reader."""
    data = MNIST(str(root), train=train, download=False)
    return data.data.unsqueeze(1).contiguous(), data.targets.to(torch.int64), [str(i) for i in range(10)]


def read_cifar10(root: Path, train: bool) -> tuple[Tensor, Tensor, list[str]]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64, class names) from the python pickles."""
    folder = cifar10_folder(root)
    names = CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES
    images, labels = cifar_pickles.read_batches(folder, names)
    return torch.from_numpy(images), torch.from_numpy(labels), cifar_pickles.read_label_names(folder)


def convert_channels(images: Tensor, channels: int) -> Tensor:
    """uint8 NCHW with 1 or 3 channels -> `channels` channels (gray repeated, or PIL's luma)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor(_LUMA, dtype=torch.int64).view(1, 3, 1, 1)
        luma = (images.to(torch.int64) * weights).sum(dim=1, keepdim=True) + 0x8000
        return (luma >> 16).to(torch.uint8)
    raise ValueError(f"cannot convert {have} channels to {channels}")


class TensorBatchSource:
    """A split held as uint8 images and int64 labels on the device (or the images on `store`, the
    host, when they would crowd a GPU: each batch is gathered there and then copied)."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        finisher: BatchFinisher,
        store: torch.device | None = None,
    ) -> None:
        self.store = store or finisher.device
        self.images = images.to(self.store)
        self.labels = labels.to(finisher.device)
        self.finisher = finisher
        self.bounds = batch_bounds(len(labels), batch_size)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        return len(self.bounds)

    def batches(self, epoch: int | None, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        finish, device = self.finisher.finish, self.finisher.device
        if epoch is None:
            for start, end in self.bounds[skip:]:
                yield finish(self.images[start:end].to(device), None), self.labels[start:end]
            return
        order = epoch_order(self.num_samples, self.finisher.seed, epoch)
        stored_order, order = order.to(self.store), order.to(device)
        params = self.finisher.pass_params(self.num_samples, epoch)
        for start, end in self.bounds[skip:]:
            batch_params = params[start:end] if params is not None else None
            images = self.images[stored_order[start:end]].to(device, non_blocking=True)
            yield finish(images, batch_params), self.labels[order[start:end]]

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
from cnnq.data.splits import batch_bounds, epoch_order

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# ITU-R 601-2 luma in 16-bit fixed point, exactly as PIL's convert("L") computes it.
_LUMA = (19595, 38470, 7471)


def mnist_folder(root: Path) -> Path:
    return root / "MNIST" / "raw"


def cifar10_folder(root: Path) -> Path:
    return root / cifar_pickles.FOLDER


def mnist_missing(root: Path) -> list[Path]:
    return [mnist_folder(root) / name for name in MNIST_FILES if not (mnist_folder(root) / name).is_file()]


def cifar10_missing(root: Path) -> list[Path]:
    names = (*cifar_pickles.TRAIN_FILES, *cifar_pickles.TEST_FILES, cifar_pickles.META_FILE)
    return [cifar10_folder(root) / name for name in names if not (cifar10_folder(root) / name).is_file()]


def read_mnist(root: Path, train: bool) -> tuple[Tensor, Tensor, list[str]]:
    """(images (N, 1, 28, 28) uint8, labels (N,) int64, class names) from torchvision's IDX reader."""
    data = MNIST(str(root), train=train, download=False)
    return data.data.unsqueeze(1).contiguous(), data.targets.to(torch.int64), [str(i) for i in range(10)]


def read_cifar10(root: Path, train: bool) -> tuple[Tensor, Tensor, list[str]]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64, class names) from the python pickles."""
    folder = cifar10_folder(root)
    names = cifar_pickles.TRAIN_FILES if train else cifar_pickles.TEST_FILES
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
    """A split held as uint8 images and int64 labels on the device."""

    def __init__(self, images: Tensor, labels: Tensor, *, batch_size: int, finisher: BatchFinisher) -> None:
        self.images = images.to(finisher.device)
        self.labels = labels.to(finisher.device)
        self.finisher = finisher
        self.bounds = batch_bounds(len(labels), batch_size)

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        return len(self.bounds)

    def batches(self, epoch: int | None, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        finish = self.finisher.finish
        if epoch is None:
            for start, end in self.bounds[skip:]:
                yield finish(self.images[start:end], None), self.labels[start:end]
            return
        order = epoch_order(self.num_samples, self.finisher.seed, epoch).to(self.finisher.device)
        params = self.finisher.pass_params(self.num_samples, epoch)
        for start, end in self.bounds[skip:]:
            index = order[start:end]
            batch_params = params[start:end] if params is not None else None
            yield finish(self.images[index], batch_params), self.labels[index]

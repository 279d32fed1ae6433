"""What `load_dataset` hands a job: the splits as batch sources, plus what a model file must record."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from cnnq.data.augment import Augmentation
from cnnq.data.splits import torch_generator
from cnnq.data.transforms import normalization_tensors, normalize_batch, resize_batch


class BatchSource(Protocol):
    """One split of a dataset, as batches on the device.

    `batches(epoch)`: shuffled and augmented from (seed, epoch); `batches(None)`: in order, plain.
    """

    num_samples: int

    def batches(self, epoch: int | None, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of a pass (`epoch` None: in order, unaugmented), from batch `skip` on (a run
        resumed mid-epoch); they depend only on (seed, epoch)."""
        ...

    def __len__(self) -> int: ...


@dataclass
class DatasetBundle:
    classes: list[str]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_counts: list[int]
    train: BatchSource
    val: BatchSource
    test: BatchSource | None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Everything a job logs about its data, `choices` included."""
    held_in_memory: bool = True
    """The images are decoded uint8 tensors (else DataLoader workers decode the files every epoch)."""
    choices: list[str] = field(default_factory=list)
    """How the input (channels, size) and where the images are held were chosen."""
    survey: dict[str, Any] | None = None
    """What the sampled images of a folder or X-ray set were (`cnnq.data.survey`)."""

    def summary(self) -> dict[str, Any]:
        """The data as a job's result records it (`cnnq show`)."""
        side = self.image_size
        return {
            "input": f"{self.in_channels}x{side}x{side}",
            "held": "memory" if self.held_in_memory else "streamed",
            "choices": self.choices,
            "sampled": self.survey,
        }


class BatchFinisher:
    """uint8 NCHW batch (any device) -> normalised, resized, augmented float batch on the device.

    The same steps for tensor-held sets and DataLoader-fed sets. Augmentation parameters for a
    whole pass are drawn once (`pass_params`) and sliced per batch, so a pass costs one small
    host-to-device copy, not one per batch.
    """

    def __init__(
        self,
        *,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int,
        augmentation: Augmentation | None,
        seed: int,
    ) -> None:
        self.device = device
        self.image_size = image_size
        self.augmentation = (
            augmentation if augmentation is not None and not augmentation.is_identity else None
        )
        self.seed = seed
        self.scale, self.shift = normalization_tensors(mean, std, device)

    def pass_params(self, count: int, epoch: int | None) -> Tensor | None:
        if epoch is None or self.augmentation is None:
            return None
        params = self.augmentation.sample(count, torch_generator(self.seed, "augment", epoch))
        return params.to(self.device)

    def finish(self, images: Tensor, params: Tensor | None) -> Tensor:
        batch = resize_batch(normalize_batch(images, self.scale, self.shift), self.image_size)
        if params is not None and self.augmentation is not None:
            batch = self.augmentation.apply(batch, params)
        return batch

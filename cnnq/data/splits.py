"""Seeded choices about which samples go where: limits, stratified validation carves, epoch orders.

Everything is derived from numbers (seed, epoch, a stream name), never from global RNG state, so a
resumed job sees exactly the samples and orders an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_STREAMS = {"limit": 1, "carve": 2, "order": 3, "augment": 4}


def stream_seed(seed: int, stream: str, epoch: int = 0) -> int:
    """A 63-bit seed for one purpose (`limit`, `carve`, `order`, `augment`) of one epoch."""
    state = np.random.SeedSequence([seed, _STREAMS[stream], epoch]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def torch_generator(seed: int, stream: str, epoch: int = 0) -> torch.Generator:
    """A CPU generator for one stream; CPU so the numbers do not depend on the device."""
    return torch.Generator().manual_seed(stream_seed(seed, stream, epoch))


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of `count` samples for one epoch (int64, CPU)."""
    return torch.randperm(count, generator=torch_generator(seed, "order", epoch))


def seeded_subset(count: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of `limit` of `count` samples picked at random (sorted), or all of them."""
    if limit is None or limit >= count:
        return np.arange(count)
    rng = np.random.default_rng(stream_seed(seed, "limit"))
    return np.sort(rng.permutation(count)[:limit])


def stratified_split(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, carved) index arrays, sorted and disjoint: `fraction` of each class is carved.

    A class with at least two samples gives at least one to the carve and keeps at least one.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(stream_seed(seed, "carve"))
    carved: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        take = min(max(1, round(fraction * len(members))), len(members) - 1)
        carved.append(rng.permutation(members)[:take])
    carved_idx = np.sort(np.concatenate(carved)) if carved else np.array([], dtype=np.int64)
    kept_idx = np.setdiff1d(np.arange(len(labels)), carved_idx)
    return kept_idx, carved_idx


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int) -> list[int]:
    return [int(c) for c in np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)]


def batch_bounds(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of a pass. A last batch of one sample joins the one before it,
    because BatchNorm cannot train on a batch of one."""
    bounds = [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], count)]
    return bounds

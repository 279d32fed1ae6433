"""Reading the CIFAR-10 python pickles without running arbitrary code from them.

torchvision's `CIFAR10` reads the same files but first insists on the md5 of the original
download, so it refuses any other set in this format (and small test sets). This reader accepts
any file in the format and unpickles with an allow-list: only the numpy array machinery the files
need, so a hostile pickle in a data root cannot run code. `cnnq data fetch cifar10` still goes
through torchvision, which checks the md5 of what it downloads.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cnnq.data.catalog import CIFAR10_META_FILE
from cnnq.errors import UserError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            entry = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise UserError(f"cifar10: cannot read {path}: {error}") from None
    if not isinstance(entry, dict):
        raise UserError(f"cifar10: {path} is not a CIFAR batch (a pickled dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_batches(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from the named batch files."""
    images, labels = [], []
    for name in names:
        entry = _load(folder / name)
        try:
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            targets = np.asarray(entry["labels"], dtype=np.int64)
        except (KeyError, ValueError) as error:
            raise UserError(f"cifar10: {folder / name} is not a CIFAR batch: {error}") from None
        images.append(data)
        labels.append(targets)
    return np.concatenate(images), np.concatenate(labels)


def read_label_names(folder: Path) -> list[str]:
    names = _load(folder / CIFAR10_META_FILE).get("label_names")
    if not isinstance(names, list):
        raise UserError(f"cifar10: {folder / CIFAR10_META_FILE} has no label_names")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]

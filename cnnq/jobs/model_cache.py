"""What a job process keeps from one job to the next: the models and ONNX sessions it loaded last.

A worker reuses its job process (`cnnq.workers.job_process`), so the next job with the same model
file, a bulk job's next shard above all, skips reading and building the model and exporting and
loading its engine. An entry is keyed by the file's path (and the device or thread count) and is
used only while the file's size, modification time and inode are those it had when it was loaded:
a model file or ONNX export replaced since is loaded afresh, just as a fresh process would.
`cnnq run` keeps one entry; the dashboard keeps the models its X-ray check and review queue score with.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

import torch

from cnnq.jobs.checkpoint import LoadedModel, load_model_file

T = TypeVar("T")
KEEP = 2
"""Entries per cache: enough for a model and the one before it (an eval between two bulk jobs)."""


def _stamp(path: Path) -> tuple[int, int, int]:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns, status.st_ino


class FileCache(Generic[T]):
    """The last `keep` values built from files, each valid while its file is unchanged."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._entries: OrderedDict[tuple[Hashable, ...], tuple[tuple[int, int, int], T]] = OrderedDict()
        self._lock = threading.Lock()  # the dashboard serves its sessions from threads

    def get(self, path: Path, extra: tuple[Hashable, ...], build: Callable[[], T]) -> T:
        """The cached value for `path` (and `extra`), or `build()`'s, kept for next time."""
        try:
            stamp = _stamp(path)  # taken before the build: a file replaced meanwhile is rebuilt next time
        except OSError:
            return build()  # it raises the error a user should see
        key = (str(Path(path).resolve()), *extra)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == stamp:
                self._entries.move_to_end(key)
                return hit[1]
        value = build()  # outside the lock: two threads may build one file's value, and one is kept
        with self._lock:
            self._entries[key] = (stamp, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.keep:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


MODELS: FileCache[LoadedModel] = FileCache()


def cached_model(path: Path, device: torch.device | str, expected_sha256: str | None = None) -> LoadedModel:
    """`load_model_file`, once per unchanged file and device. The model is shared by every job that
    asks: callers must not change it (an engine that converts it works on a copy)."""
    path = Path(path)
    loaded = MODELS.get(
        path, (str(device),), lambda: load_model_file(path, device, expected_sha256=expected_sha256)
    )
    if expected_sha256 is not None and loaded.sha256 != expected_sha256:
        return load_model_file(path, device, expected_sha256=expected_sha256)  # raises ModelFileChanged
    return loaded

"""glibc's allocator told to keep the memory a job frees, and to give it back between jobs.

PyTorch's CPU tensors come from plain `malloc`. glibc serves a block above its mmap threshold (128 KiB,
rising with frees to at most 32 MiB) with a fresh `mmap` and unmaps it on free, so each large
activation of each training step is faulted in and zero-filled by the kernel page by page, again:
52,000 page faults per step of mnist-cnn on a batch of 64 RGB 64 px images. With the thresholds
raised, freed blocks stay in the heap and the next step reuses them (no page faults after the first
few steps; classic nets' CPU steps 1.3-1.5x faster, `benchmarks/cpu_training_step.py`); the process's
peak stays about the same (1,112 against 1,095 MB there), it only stops returning memory mid-job.
This is the allocator advice of PyTorch's CPU performance guide (jemalloc or tcmalloc, preloaded),
done with the allocator every Linux process already has.

Left alone where the user tuned glibc's malloc themselves (`MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES=glibc.malloc...`) and where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc takes up to 1 GiB in the main arena (a VGG-16 activation at 224 px and batch 64 is 822 MB);
# some builds refuse more than 32 MiB, its documented ceiling: then that.
_MMAP_THRESHOLDS = (2**30, 2**25)

_kept: bool | None = None


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def user_tuned_malloc() -> bool:
    """Whether the environment already sets glibc's malloc thresholds."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return (
        "MALLOC_MMAP_THRESHOLD_" in os.environ
        or "MALLOC_TRIM_THRESHOLD_" in os.environ
        or "glibc.malloc.mmap_threshold" in tunables
        or "glibc.malloc.trim_threshold" in tunables
    )


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True when they are raised."""
    global _kept
    if _kept is None:
        _kept = False
        libc = _glibc()
        if libc is not None and not user_tuned_malloc():
            for threshold in _MMAP_THRESHOLDS:
                if libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1:
                    _kept = libc.mallopt(_M_TRIM_THRESHOLD, 2 * threshold) == 1
                    break
    return _kept


def give_back_freed_memory() -> None:
    """Return the heap's free pages to the system: between jobs, where no step will reuse them."""
    libc = _glibc()
    if _kept and libc is not None:
        libc.malloc_trim(0)

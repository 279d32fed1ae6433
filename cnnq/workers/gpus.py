"""The GPUs of this host, from `nvidia-smi`, so that no worker parent ever initialises CUDA."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mb: int


def visible_gpus() -> list[Gpu]:
    """Every GPU `nvidia-smi` lists; empty when there is no driver or no GPU."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        out = subprocess.run(
            [binary, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        index, name, memory = (part.strip() for part in line.split(",", 2))
        gpus.append(Gpu(int(index), name, int(float(memory))))
    return gpus

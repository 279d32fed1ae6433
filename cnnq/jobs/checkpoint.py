"""Checkpoints and model files: written atomically, read with `torch.load(weights_only=True)`.

Everything saved is tensors and plain containers of numbers and strings, so loading never runs
pickled code. Two formats live here:

- a training checkpoint (`last.pt`): model, optimizer, scheduler, scaler, epoch, RNG states and the
  early-stopping bookkeeping, enough to resume a run exactly;
- a model file (`best.pt`): a state dict plus what is needed to use it (model name, input shape,
  classes, normalisation, decision threshold), the thing eval, infer, Grad-CAM and the dashboard load.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnq.atomic_file import atomic_path
from cnnq.errors import UserError
from cnnq.jobs.model_info import MODEL_FORMAT, ModelInfo, model_info_of


def save_checkpoint(
    path: Path, state: dict[str, Any], before_replace: Callable[[], None] | None = None
) -> Path:
    """Write `state` to `path` atomically: a reader sees the old file or the new one, never half.
    `before_replace` may raise to keep the old file (a run that no longer owns its job)."""
    with atomic_path(path, before_replace) as temporary, open(temporary, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())
    return path


def load_checkpoint(
    path: Path, device: torch.device | str = "cpu", *, data: bytes | None = None
) -> dict[str, Any]:
    """The checkpoint at `path`; from `data` instead when the caller has read (and hashed) its bytes."""
    try:
        state = torch.load(path if data is None else io.BytesIO(data), map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give a model written by a cnnq training job") from None
    except Exception as error:
        raise UserError(
            f"{path}: not a readable cnnq checkpoint ({type(error).__name__}); retrain it"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a cnnq checkpoint; give a model written by a cnnq training job")
    return state


def rng_states() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states, as tensors and numbers (weights_only-safe)."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(python_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate(
        (python_state["version"], tuple(int(v) for v in python_state["state"]), python_state["gauss_next"])
    )


def save_model_file(
    path: Path, model: nn.Module, info: ModelInfo, before_replace: Callable[[], None] | None = None
) -> Path:
    state_dict = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    return save_checkpoint(
        path, {"format": MODEL_FORMAT, "state_dict": state_dict, "metadata": info.as_dict()}, before_replace
    )


class ModelFileChanged(UserError):
    """The model file is not the one the job was submitted with (its sha256 differs)."""


def read_model_bytes(path: Path, expected_sha256: str | None = None) -> tuple[bytes, str]:
    """A model file's bytes and their sha256, from one read: whatever loads the model from these bytes
    and names things by this digest (the ONNX cache) sees one version of the file, even if a writer
    replaces it meanwhile. With `expected_sha256`, a file that has changed since is refused."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give a model written by a cnnq training job") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the model file ({error.strerror or error})") from None
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelFileChanged(
            f"{path} has changed since this job was submitted (sha256 {expected_sha256[:12]} then, "
            f"{digest[:12]} now); submit the job again to use the model as it is now"
        )
    return data, digest


def read_model_file(path: Path, *, data: bytes | None = None) -> tuple[ModelInfo, dict[str, torch.Tensor]]:
    """The metadata and weights of a model file, on the CPU (cheap: no model is built); from `data`
    when the caller has read its bytes already."""
    state = load_checkpoint(path, data=data)
    return model_info_of(state, path), state["state_dict"]


@dataclass
class LoadedModel:
    """A trained model ready to score: in eval mode, on its device, with what it was trained on (`info`:
    its classes, input shape, normalisation, threshold...)."""

    model: nn.Module
    info: ModelInfo
    path: Path
    device: torch.device
    sha256: str = ""
    """The sha256 of the very bytes the model was loaded from ("" for a model not read from a file)."""


def load_model_file(
    path: Path, device: torch.device | str = "cpu", *, expected_sha256: str | None = None
) -> LoadedModel:
    """The model in the file, loaded from the bytes its `sha256` is of (one read of the file).
    `expected_sha256` (the digest a job was submitted with): refuse a file that has changed since."""
    from cnnq.models.registry import build_model

    path = Path(path)
    data, digest = read_model_bytes(path, expected_sha256)
    info, state_dict = read_model_file(path, data=data)
    del data
    model = build_model(
        info.model, in_channels=info.in_channels, image_size=info.image_size, num_classes=info.num_classes
    )
    model.load_state_dict(state_dict)
    device = torch.device(device)
    model.to(device).eval()
    return LoadedModel(model=model, info=info, path=path, device=device, sha256=digest)

"""ImageNet weights for the torchvision models, read from a local file: cnnq never downloads.

The file is torchvision's own (its hub cache, or one the user names with `--weights`). The
backbone must match it tensor for tensor; the head takes the file's tensors only where their shapes
fit (a different number of classes, or the small-input head, starts fresh). For one input channel
the RGB filters of the first convolution are summed, which gives exactly the response the RGB net
has to the grayscale image repeated in three channels.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import torch
from torchvision.models import get_model_weights

from cnnq.errors import UserError


def weights_url(name: str) -> str:
    return get_model_weights(name).DEFAULT.url


def cached_weights_path(name: str) -> Path:
    """Where torchvision keeps `name`'s ImageNet weights: torch.hub.get_dir()/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlsplit(weights_url(name)).path).name


def locate_weights(name: str, weights: Path | None) -> Path:
    """The weights file to read, or a UserError that says where to put it."""
    if weights is not None:
        path = weights.expanduser()
        if not path.is_file():
            raise UserError(f"--weights: {path} is not a file; give the file of {name} weights to start from")
        return path
    path = cached_weights_path(name)
    if not path.is_file():
        raise UserError(
            f"--pretrained: {name}'s ImageNet weights are not in torchvision's cache (cnnq never downloads): "
            f"put {weights_url(name)} at {path} (or pass --weights FILE)"
        )
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:  # mapped, not read, where the format allows: checking VGG's 500 MB at submit stays cheap
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # a file we cannot read is the user's to fix, whatever the reason
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot load weights file {path} ({reason}); it must be a torch.save'd state dict"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a state dict (torch.save(model.state_dict()))")
    return dict(state)


def fit_state_dict(
    own: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    *,
    name: str,
    path: Path,
    first_conv: str,
    head: str,
) -> dict[str, torch.Tensor]:
    """The tensors of `state` to load into a model whose state dict is `own` (meta tensors will do)."""
    fitted: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        in_head = key.startswith(f"{head}.")
        tensor = state.get(key)
        if tensor is None:
            if in_head or key.endswith("num_batches_tracked"):
                continue
            raise UserError(f"weights file {path} does not hold {name} weights: it has no {key}")
        if key == f"{first_conv}.weight" and target.shape[1] == 1 and tensor.shape[1] == 3:
            tensor = tensor.sum(dim=1, keepdim=True)
        if tensor.shape != target.shape:
            if in_head:
                continue
            raise UserError(
                f"weights file {path} does not hold {name} weights: "
                f"{key} is {tuple(tensor.shape)}, expected {tuple(target.shape)}"
            )
        fitted[key] = tensor
    return fitted

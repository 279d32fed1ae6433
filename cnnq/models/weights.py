"""ImageNet weights for the torchvision models, read from a local file: cnnq never downloads.

The file is torchvision's own (its hub cache, or one the user names with `--weights`). The
backbone must match it tensor for tensor; the head takes the file's tensors only where their shapes
fit (a different number of classes, or the small-input head, starts fresh). For one input channel
the RGB filters of the first convolution are summed, which gives exactly the response the RGB net
has to the grayscale image repeated in three channels. `check_model` checks a model choice, its
weights file included, without torch (`cnnq submit`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cnnq.errors import UserError
from cnnq.models.backbones import backbone_shapes
from cnnq.models.catalog import FIRST_CONV, HEAD, check_input, model_info
from cnnq.torch_file import TensorShape, UnreadableTorchFile, read_torch_file

if TYPE_CHECKING:  # only reading the tensors needs torch; finding and checking a file does not
    import torch

WEIGHTS_URL = "https://download.pytorch.org/models/"
"""Where torchvision publishes its ImageNet weights (the file names are in `catalog`)."""

Shape = tuple[int, ...]


def weights_url(name: str) -> str:
    return WEIGHTS_URL + str(model_info(name).weights_file)


def torch_hub_dir() -> Path:
    """`torch.hub.get_dir()` without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub,
    else ~/.cache/torch/hub (torch's rule; these are torch's variables, not cnnq settings)."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def cached_weights_path(name: str) -> Path:
    """Where torchvision keeps `name`'s ImageNet weights: torch.hub.get_dir()/checkpoints/<file>."""
    return torch_hub_dir() / "checkpoints" / str(model_info(name).weights_file)


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


def _unloadable(path: Path, reason: str) -> UserError:
    return UserError(f"cannot load weights file {path} ({reason}); it must be a torch.save'd state dict")


def _not_a_state_dict(path: Path) -> UserError:
    return UserError(f"weights file {path} does not hold a state dict (torch.save(model.state_dict()))")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:  # mapped, not read, where the format allows: loading VGG's 500 MB stays cheap
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as error:  # a file we cannot read is the user's to fix, whatever the reason
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise _unloadable(path, reason) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _not_a_state_dict(path)
    return dict(state)


def read_tensor_shapes(path: Path) -> dict[str, Shape]:
    """The name and shape of each tensor in a weights file, read without torch (`cnnq.torch_file`).

    The reader takes plain containers and tensors only, as `read_state_dict`'s `weights_only` load
    does for a state dict; a file it refuses would hold something other than tensors, which
    `read_state_dict` refuses too, so the verdict at submit is the job's verdict."""
    try:
        state = read_torch_file(path)
    except (OSError, UnreadableTorchFile) as error:
        raise _unloadable(path, str(error) or type(error).__name__) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, TensorShape) for v in state.values()):
        raise _not_a_state_dict(path)
    return {str(key): value.shape for key, value in state.items()}


def fitting_keys(
    own: Mapping[str, Shape],
    state: Mapping[str, Shape],
    *,
    name: str,
    path: Path,
    first_conv: str,
    head: str,
) -> list[str]:
    """The keys of `state` to load into a model whose tensor shapes are `own`; a UserError when a
    backbone tensor is missing or misshapen. A 3-channel first convolution fits a 1-channel one
    (`fit_state_dict` sums its filters)."""
    fitting: list[str] = []
    for key, target in own.items():
        in_head = key.startswith(f"{head}.")
        shape = state.get(key)
        if shape is None:
            if in_head or key.endswith("num_batches_tracked"):
                continue
            raise UserError(f"weights file {path} does not hold {name} weights: it has no {key}")
        if key == f"{first_conv}.weight" and target[1] == 1 and shape[1] == 3:
            shape = (shape[0], 1, *shape[2:])
        if tuple(shape) != tuple(target):
            if in_head:
                continue
            raise UserError(
                f"weights file {path} does not hold {name} weights: "
                f"{key} is {tuple(state[key])}, expected {tuple(target)}"
            )
        fitting.append(key)
    return fitting


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
    keys = fitting_keys(
        {key: tuple(tensor.shape) for key, tensor in own.items()},
        {key: tuple(tensor.shape) for key, tensor in state.items()},
        name=name,
        path=path,
        first_conv=first_conv,
        head=head,
    )
    return {key: _fitted(state[key], own[key], key == f"{first_conv}.weight") for key in keys}


def _fitted(tensor: torch.Tensor, target: torch.Tensor, first_conv: bool) -> torch.Tensor:
    if first_conv and target.shape[1] == 1 and tensor.shape[1] == 3:
        return tensor.sum(dim=1, keepdim=True)
    return tensor


def check_model(
    name: str, *, in_channels: int, image_size: int, pretrained: bool = False, weights: Path | None = None
) -> None:
    """Refuse (UserError) what `registry.build_model` would fail on, without torch: the input, and with
    `pretrained` the weights file (found, and holding every backbone tensor in the right shape)."""
    info = model_info(name)
    check_input(info, in_channels=in_channels, image_size=image_size, pretrained=pretrained, weights=weights)
    if pretrained:
        path = locate_weights(info.name, weights)
        fitting_keys(
            backbone_shapes(info.name, in_channels),
            read_tensor_shapes(path),
            name=info.name,
            path=path,
            first_conv=FIRST_CONV[info.family],
            head=HEAD[info.family],
        )

"""The model zoo built: each net of `catalog`'s table as a torch module, and its pretrained weights.

What each model is, whether it fits an input, and its weights files are in `cnnq.models.catalog`,
which needs no torch; they are re-exported here for the code that builds models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cnnq.errors import UserError
from cnnq.models import classic
from cnnq.models import weights as weight_files
from cnnq.models.catalog import (
    ALIASES,
    FIRST_CONV,
    HEAD,
    ModelInfo,
    check_input,
    input_variant,
    model_info,
    model_names,
)
from cnnq.models.torchvision_zoo import build_torchvision_model
from cnnq.models.weights import check_model

__all__ = [
    "ALIASES",
    "ModelInfo",
    "build_model",
    "check_model",
    "head_of",
    "input_variant",
    "last_conv_layer",
    "model_info",
    "model_names",
]

Builder = Callable[[int, int, int], nn.Module]  # (in_channels, image_size, num_classes)

_CLASSIC: dict[str, Builder] = {
    "simple-cnn": classic.simple_cnn,
    "cifar-cnn": classic.cifar_cnn,
    "mnist-cnn": classic.mnist_cnn,
    "lenet": classic.lenet,
}


def _build(info: ModelInfo, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    if info.pretrained:
        return build_torchvision_model(
            info.name, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )
    return _CLASSIC[info.name](in_channels, image_size, num_classes)


def _pretrained_tensors(info: ModelInfo, model: nn.Module, weights: Path | None) -> dict[str, torch.Tensor]:
    path = weight_files.locate_weights(info.name, weights)
    return weight_files.fit_state_dict(
        model.state_dict(),
        weight_files.read_state_dict(path),
        name=info.name,
        path=path,
        first_conv=FIRST_CONV[info.family],
        head=HEAD[info.family],
    )


def build_model(
    name: str,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    pretrained: bool = False,
    weights: Path | None = None,
    freeze_backbone: bool = False,
) -> nn.Module:
    """The named model for square `in_channels` x `image_size` inputs, returning `num_classes` logits."""
    info = model_info(name)
    check_input(info, in_channels=in_channels, image_size=image_size, pretrained=pretrained, weights=weights)
    if num_classes < 1:
        raise UserError(f"{info.name}: need at least one class (got {num_classes})")
    model = _build(info, in_channels, image_size, num_classes)
    if pretrained:
        model.load_state_dict(_pretrained_tensors(info, model, weights), strict=False)
    if freeze_backbone:
        head = head_of(model)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in head.parameters():
            parameter.requires_grad_(True)
    return model


def head_of(model: nn.Module) -> nn.Module:
    """The classifier head: what `freeze_backbone` leaves trainable."""
    for name in ("classifier", "fc"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise ValueError(f"{type(model).__name__} has no `classifier` or `fc` head")


def last_conv_layer(model: nn.Module) -> nn.Module:
    """The last Conv2d in registration order (Grad-CAM's target layer)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer")
    return convs[-1]

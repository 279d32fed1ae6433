"""The model zoo by name: what each model is, whether it fits an input, and building it."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnq.errors import UserError
from cnnq.models import classic
from cnnq.models import weights as weight_files
from cnnq.models.torchvision_zoo import (
    FIRST_CONV,
    HEAD,
    SMALL_INPUT_BELOW,
    SMALL_INPUT_CHANGES,
    build_torchvision_model,
    family_of,
)

Builder = Callable[[int, int, int], nn.Module]  # (in_channels, image_size, num_classes)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    description: str
    default_input: tuple[int, int, int]  # channels, height, width
    default_classes: int
    min_size: int  # the smallest square input the net takes
    pretrained: bool  # torchvision publishes ImageNet weights for it


_CLASSIC: dict[str, Builder] = {
    "simple-cnn": classic.simple_cnn,
    "cifar-cnn": classic.cifar_cnn,
    "mnist-cnn": classic.mnist_cnn,
    "lenet": classic.lenet,
}
_MNIST, _CIFAR = (1, 28, 28), (3, 32, 32)


def _classic(name: str, description: str, default_input: tuple[int, int, int], min_size: int) -> ModelInfo:
    return ModelInfo(name, "classic", description, default_input, 10, min_size, pretrained=False)


def _torchvision(name: str, description: str, min_size: int) -> ModelInfo:
    return ModelInfo(name, family_of(name), description, (3, 224, 224), 1000, min_size, pretrained=True)


def _vgg(depth: int, batch_norm: bool) -> ModelInfo:
    name = f"vgg{depth}{'_bn' if batch_norm else ''}"
    norm = " with BatchNorm" if batch_norm else ""
    return _torchvision(name, f"VGG-{depth}{norm} (Simonyan & Zisserman 2014), torchvision", 16)


_INFO: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        _classic("simple-cnn", "Keras MNIST tutorial: 2 conv+pool, Dense(64)", _MNIST, 10),
        _classic("cifar-cnn", "CIFAR-10 tutorial: 3 VGG-style blocks 32/64/128, Dense(128)", _CIFAR, 8),
        _classic("mnist-cnn", "PyTorch MNIST example: conv 32/64, dropout, fc 128", _MNIST, 6),
        _classic("lenet", "LeNet-5 (LeCun 1998): tanh, average-pool subsampling", _MNIST, 12),
        _torchvision("alexnet", "AlexNet (Krizhevsky 2012), torchvision", 15),
        *(_vgg(depth, batch_norm) for depth in (11, 13, 16, 19) for batch_norm in (False, True)),
        _torchvision("resnet18", "ResNet-18 (He 2015), torchvision", 8),
    )
}
ALIASES = {"vgg": "vgg16"}


def model_names() -> list[str]:
    """The canonical names (aliases such as `vgg` are accepted too but not listed)."""
    return list(_INFO)


def model_info(name: str) -> ModelInfo:
    """The model's entry, or a UserError suggesting the closest names."""
    canonical = ALIASES.get(name, name)
    if canonical in _INFO:
        return _INFO[canonical]
    close = difflib.get_close_matches(name, [*_INFO, *ALIASES], n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UserError(f"unknown model {name!r}; {hint}see `cnnq models` for the list")


def input_variant(name: str, *, in_channels: int, image_size: int) -> str:
    """Which form of the net an input of this shape gets."""
    info = model_info(name)
    if not info.pretrained:
        return f"classifier sized for {image_size}x{image_size} inputs"
    form = "torchvision's definition"
    if image_size < SMALL_INPUT_BELOW:
        form = SMALL_INPUT_CHANGES[family_of(info.name)]
    return form if in_channels == 3 else f"{form}, first conv takes {in_channels} channel(s)"


def _check_input(
    info: ModelInfo, in_channels: int, image_size: int, pretrained: bool, weights: Path | None
) -> None:
    if in_channels < 1:
        raise UserError(f"{info.name}: images need at least one channel (got {in_channels})")
    if image_size < info.min_size:
        raise UserError(
            f"--image-size: {info.name} needs images of at least {info.min_size}x{info.min_size} "
            f"(got {image_size}x{image_size}); pass --image-size {max(info.min_size, 32)} or more"
        )
    if weights is not None and not pretrained:
        raise UserError("--weights only makes sense with --pretrained")
    if not pretrained:
        return
    if not info.pretrained:
        with_weights = ", ".join(n for n, i in _INFO.items() if i.pretrained)
        raise UserError(f"--pretrained: {info.name} has no pretrained weights; only {with_weights} do")
    if in_channels not in (1, 3):
        raise UserError(f"--pretrained: ImageNet weights take 1 or 3 channels, not {in_channels}")


def _build(info: ModelInfo, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    if info.pretrained:
        return build_torchvision_model(
            info.name, in_channels=in_channels, image_size=image_size, num_classes=num_classes
        )
    return _CLASSIC[info.name](in_channels, image_size, num_classes)


def _pretrained_tensors(info: ModelInfo, model: nn.Module, weights: Path | None) -> dict[str, torch.Tensor]:
    path = weight_files.locate_weights(info.name, weights)
    family = family_of(info.name)
    return weight_files.fit_state_dict(
        model.state_dict(),
        weight_files.read_state_dict(path),
        name=info.name,
        path=path,
        first_conv=FIRST_CONV[family],
        head=HEAD[family],
    )


def check_model(
    name: str, *, in_channels: int, image_size: int, pretrained: bool = False, weights: Path | None = None
) -> None:
    """Refuse (UserError) what `build_model` would fail on, without materialising the model."""
    info = model_info(name)
    _check_input(info, in_channels, image_size, pretrained, weights)
    if pretrained:
        with torch.device("meta"):
            model = _build(info, in_channels, image_size, info.default_classes)
        _pretrained_tensors(info, model, weights)


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
    _check_input(info, in_channels, image_size, pretrained, weights)
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

"""The model zoo as a table: names, families, inputs, weights files and the checks on them, without torch.

`cnnq models` and `cnnq submit` read this module only, so they start in a fraction of a second;
`cnnq.models.registry` builds the nets it names. The two cannot drift: tests build every model and
compare it with this table (minimum sizes, backbone tensors, weights files).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cnnq.errors import UserError

Family = Literal["classic", "alexnet", "vgg", "resnet"]

SMALL_INPUT_BELOW = 64
"""Below this side the torchvision nets take their small-input form (see `torchvision_zoo`)."""
SMALL_INPUT_CHANGES: dict[Family, str] = {
    "alexnet": "small-input variant: stride-1 11x11 stem, global-average-pool head",
    "vgg": "small-input variant: no fifth max-pool, global-average-pool head",
    "resnet": "small-input variant: stride-1 7x7 stem, no stem max-pool",
}
# Where each family's first convolution and classifier head live (state-dict prefixes).
FIRST_CONV: dict[Family, str] = {"alexnet": "features.0", "vgg": "features.0", "resnet": "conv1"}
HEAD: dict[Family, str] = {"alexnet": "classifier", "vgg": "classifier", "resnet": "fc"}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: Family
    description: str
    default_input: tuple[int, int, int]  # channels, height, width
    default_classes: int
    min_size: int  # the smallest square input the net takes
    weights_file: str | None = None  # the name of torchvision's ImageNet weights file, if it publishes one

    @property
    def pretrained(self) -> bool:
        return self.weights_file is not None


_MNIST, _CIFAR = (1, 28, 28), (3, 32, 32)


def _classic(name: str, description: str, default_input: tuple[int, int, int], min_size: int) -> ModelInfo:
    return ModelInfo(name, "classic", description, default_input, 10, min_size)


def family_of(name: str) -> Family:
    """The family of a torchvision net's name."""
    if name == "alexnet":
        return "alexnet"
    return "resnet" if name.startswith("resnet") else "vgg"


def _torchvision(name: str, description: str, min_size: int, weights_file: str) -> ModelInfo:
    return ModelInfo(name, family_of(name), description, (3, 224, 224), 1000, min_size, weights_file)


_VGG_WEIGHTS = {
    "vgg11": "8a719046",
    "vgg11_bn": "6002323d",
    "vgg13": "19584684",
    "vgg13_bn": "abd245e5",
    "vgg16": "397923af",
    "vgg16_bn": "6c64b313",
    "vgg19": "dcbb9e9d",
    "vgg19_bn": "c79401a0",
}


def _vgg(depth: int, batch_norm: bool) -> ModelInfo:
    name = f"vgg{depth}{'_bn' if batch_norm else ''}"
    norm = " with BatchNorm" if batch_norm else ""
    description = f"VGG-{depth}{norm} (Simonyan & Zisserman 2014), torchvision"
    return _torchvision(name, description, 16, f"{name}-{_VGG_WEIGHTS[name]}.pth")


_INFO: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        _classic("simple-cnn", "Keras MNIST tutorial: 2 conv+pool, Dense(64)", _MNIST, 10),
        _classic("cifar-cnn", "CIFAR-10 tutorial: 3 VGG-style blocks 32/64/128, Dense(128)", _CIFAR, 8),
        _classic("mnist-cnn", "PyTorch MNIST example: conv 32/64, dropout, fc 128", _MNIST, 6),
        _classic("lenet", "LeNet-5 (LeCun 1998): tanh, average-pool subsampling", _MNIST, 12),
        _torchvision("alexnet", "AlexNet (Krizhevsky 2012), torchvision", 15, "alexnet-owt-7be5be79.pth"),
        *(_vgg(depth, batch_norm) for depth in (11, 13, 16, 19) for batch_norm in (False, True)),
        _torchvision("resnet18", "ResNet-18 (He 2015), torchvision", 8, "resnet18-f37072fd.pth"),
    )
}
ALIASES = {"vgg": "vgg16"}
TORCHVISION_MODELS = tuple(name for name, info in _INFO.items() if info.pretrained)


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
        form = SMALL_INPUT_CHANGES[info.family]
    return form if in_channels == 3 else f"{form}, first conv takes {in_channels} channel(s)"


def check_input(
    info: ModelInfo, *, in_channels: int, image_size: int, pretrained: bool, weights: Path | None
) -> None:
    """Refuse (UserError) an input shape or a --pretrained/--weights choice the net cannot take."""
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
        with_weights = ", ".join(TORCHVISION_MODELS)
        raise UserError(f"--pretrained: {info.name} has no pretrained weights; only {with_weights} do")
    if in_channels not in (1, 3):
        raise UserError(f"--pretrained: ImageNet weights take 1 or 3 channels, not {in_channels}")

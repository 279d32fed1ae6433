"""AlexNet, VGG and ResNet-18 as torchvision defines them, adapted to small and grayscale inputs.

From 64x64 up the nets are torchvision's, unchanged (so AlexNet and VGG-16 at 224x224 have their
published parameter counts). Below 64x64 (MNIST, CIFAR) the stem stops downsampling and the head
becomes global-average-pool + a small classifier; the stem keeps its kernel so every pretrained
backbone tensor still fits. A model is built on the meta device, adapted, then materialised once,
so no 100M-parameter classifier is initialised only to be thrown away.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import get_model

from cnnq.models.catalog import FIRST_CONV, SMALL_INPUT_BELOW, Family, family_of


def build_torchvision_model(name: str, *, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    family = family_of(name)
    device = torch.get_default_device()
    with torch.device("meta"):
        model = get_model(name, weights=None, num_classes=num_classes)
        if image_size < SMALL_INPUT_BELOW:
            _adapt_to_small_input(model, family, num_classes)
        if in_channels != 3:
            _set_input_channels(model, FIRST_CONV[family], in_channels)
    model = model.to_empty(device=device)
    if device.type != "meta":
        _initialise(model, family)
    return model


def _small_head(in_features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, num_classes)
    )


def _adapt_to_small_input(model: nn.Module, family: Family, num_classes: int) -> None:
    if family == "resnet":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=3, bias=False)
        model.maxpool = nn.Identity()
        return
    if family == "alexnet":
        model.features[0] = nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=5)
        model.classifier = _small_head(256, num_classes)
    else:  # Identity keeps the indices, so pretrained `features.N` keys still line up.
        model.features[len(model.features) - 1] = nn.Identity()
        model.classifier = _small_head(512, num_classes)
    model.avgpool = nn.AdaptiveAvgPool2d(1)


def _set_input_channels(model: nn.Module, path: str, in_channels: int) -> None:
    conv = model.get_submodule(path)
    assert isinstance(conv, nn.Conv2d)
    replacement = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    model.set_submodule(path, replacement)


def _initialise(model: nn.Module, family: Family) -> None:
    """torchvision's initialisation for the family (its constructors' loops), on the materialised model."""
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()  # PyTorch's defaults, including fresh BatchNorm running statistics
    if family == "alexnet":
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif family == "vgg" and isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)

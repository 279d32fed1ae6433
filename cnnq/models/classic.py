"""The classic tutorial nets, sized for the dataset's channels, image size and classes.

Each is `features` (convolutions) -> flatten -> `classifier` (fully connected), so the flattened size
follows from the image size and `classifier` is the head that `--freeze-backbone` leaves trainable.
All return logits (no softmax). Where a tutorial applies ReLU and then max-pools, these nets pool first:
ReLU is monotonic, so the outputs and the gradients are the same, and the ReLU (with its backward pass)
runs on a quarter of the values, with no layout copy between the two in channels_last (mnist-cnn trains
1.1-1.26x as fast on the CPU; `benchmarks/cpu_training_step.py`). The layers keep their positions in
`features`, so a model file's keys are the same either way.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassicNet(nn.Module):
    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def simple_cnn(in_channels: int, image_size: int, num_classes: int) -> ClassicNet:
    """Keras' MNIST tutorial net: two 3x3 conv + max-pool stages, Dense(64), Dense(classes)."""
    side = ((image_size - 2) // 2 - 2) // 2
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
    )
    classifier = nn.Sequential(
        nn.Linear(64 * side * side, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes)
    )
    return ClassicNet(features, classifier)


def cifar_cnn(in_channels: int, image_size: int, num_classes: int) -> ClassicNet:
    """The CIFAR-10 tutorial net: three VGG-style blocks (two 'same' 3x3 convs + max-pool) of 32/64/128."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in (32, 64, 128):
        layers += [
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
        ]
        channels = width
    side = image_size // 8
    classifier = nn.Sequential(
        nn.Linear(128 * side * side, 128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, num_classes)
    )
    return ClassicNet(nn.Sequential(*layers), classifier)


def mnist_cnn(in_channels: int, image_size: int, num_classes: int) -> ClassicNet:
    """PyTorch's examples/mnist net: conv 32 and 64 (3x3), max-pool, Dropout2d(0.25), fc 128, Dropout(0.5)."""
    side = (image_size - 4) // 2
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Dropout2d(0.25),
    )
    classifier = nn.Sequential(
        nn.Linear(64 * side * side, 128), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(128, num_classes)
    )
    return ClassicNet(features, classifier)


def lenet(in_channels: int, image_size: int, num_classes: int) -> ClassicNet:
    """LeNet-5 (tanh, average-pool subsampling); C1 pads by 2 so a 28x28 digit gives LeCun's 32x32 maps."""
    side = (image_size // 2 - 4) // 2
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
    )
    classifier = nn.Sequential(
        nn.Linear(16 * side * side, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )
    return ClassicNet(features, classifier)

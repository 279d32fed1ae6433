"""The backbone tensors of the torchvision nets (name -> shape), worked out without building them.

`cnnq submit train --pretrained` checks that a weights file holds every one of these in its shape,
as loading it into the built net would (`weights.fitting_keys`), without importing torch. Only the
backbone counts: the head is fitted where it can be and otherwise starts fresh, and the small-input
changes (`torchvision_zoo`) keep every backbone tensor's shape. A test compares this with the
state dict of each net that `registry.build_model` builds.
"""

from __future__ import annotations

from cnnq.models.catalog import model_info

Shape = tuple[int, ...]

_VGG_LAYERS = {  # torchvision's configurations A, B, D and E: channels of each conv, M a max-pool
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
}
_ALEXNET_CONVS = [  # features index, out channels, in channels (None: the image's), kernel
    (0, 64, None, 11),
    (3, 192, 64, 5),
    (6, 384, 192, 3),
    (8, 256, 384, 3),
    (10, 256, 256, 3),
]


def _conv(prefix: str, out: int, inp: int, kernel: int, bias: bool = True) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {f"{prefix}.weight": (out, inp, kernel, kernel)}
    if bias:
        shapes[f"{prefix}.bias"] = (out,)
    return shapes


def _batch_norm(prefix: str, channels: int) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {
        f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")
    }
    shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def _vgg(name: str, in_channels: int) -> dict[str, Shape]:
    depth = int(name.removeprefix("vgg").removesuffix("_bn"))
    batch_norm = name.endswith("_bn")
    shapes: dict[str, Shape] = {}
    index, channels = 0, in_channels
    for layer in _VGG_LAYERS[depth]:
        if layer == "M":
            index += 1
            continue
        assert isinstance(layer, int)
        shapes |= _conv(f"features.{index}", layer, channels, 3)
        if batch_norm:
            shapes |= _batch_norm(f"features.{index + 1}", layer)
        index += 3 if batch_norm else 2
        channels = layer
    return shapes


def _alexnet(in_channels: int) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {}
    for index, out, inp, kernel in _ALEXNET_CONVS:
        shapes |= _conv(f"features.{index}", out, inp or in_channels, kernel)
    return shapes


def _resnet18(in_channels: int) -> dict[str, Shape]:
    shapes = _conv("conv1", 64, in_channels, 7, bias=False) | _batch_norm("bn1", 64)
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            prefix = f"layer{stage}.{block}"
            shapes |= _conv(f"{prefix}.conv1", planes, inplanes, 3, bias=False)
            shapes |= _batch_norm(f"{prefix}.bn1", planes)
            shapes |= _conv(f"{prefix}.conv2", planes, planes, 3, bias=False)
            shapes |= _batch_norm(f"{prefix}.bn2", planes)
            if block == 0 and inplanes != planes:
                shapes |= _conv(f"{prefix}.downsample.0", planes, inplanes, 1, bias=False)
                shapes |= _batch_norm(f"{prefix}.downsample.1", planes)
            inplanes = planes
    return shapes


def backbone_shapes(name: str, in_channels: int) -> dict[str, Shape]:
    """Every backbone tensor of the named torchvision net for `in_channels` inputs, by state-dict key."""
    info = model_info(name)
    if info.family == "vgg":
        return _vgg(info.name, in_channels)
    if info.family == "alexnet":
        return _alexnet(in_channels)
    if info.name == "resnet18":
        return _resnet18(in_channels)
    raise ValueError(f"no backbone table for {info.name}")

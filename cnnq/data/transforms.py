"""What a model sees: image -> channels -> square size -> uint8 -> normalised float.

Training on folder and X-ray sets, inference, Grad-CAM and the dashboard all go through
`image_to_uint8` (one image) and `normalize_batch` (a batch), so a picture is prepared the same
way wherever it is scored. MNIST and CIFAR-10 are held as uint8 tensors and only meet
`normalize_batch` (plus `resize_batch` when an image size other than their own is asked for).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from cnnq.data.decode import to_8bit


def to_channels(image: Image.Image, in_channels: int) -> Image.Image:
    """The image in mode L (1 channel) or RGB (3 channels), from any mode PIL opens.

    Deeper than 8 bits is stretched over its own range (`decode.to_8bit`, as inference decodes).
    """
    image = to_8bit(image)
    target = "L" if in_channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def resize_square(image: Image.Image, image_size: int) -> Image.Image:
    """Squash to image_size x image_size (no crop, like Keras `target_size`), bilinear."""
    if image.size == (image_size, image_size):
        return image
    return image.resize((image_size, image_size), Image.Resampling.BILINEAR)


def image_to_uint8(image: Image.Image, *, in_channels: int, image_size: int) -> Tensor:
    """One image as a CHW uint8 tensor of the model's channels and size."""
    image = resize_square(to_channels(image, in_channels), image_size)
    array = np.array(image, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))
    return torch.from_numpy(array)


def normalization_tensors(
    mean: Sequence[float], std: Sequence[float], device: torch.device
) -> tuple[Tensor, Tensor]:
    """(scale, shift) with shape (1, C, 1, 1) so that x_uint8 * scale + shift == (x/255 - mean)/std."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def normalize_batch(images: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """uint8 NCHW -> normalised float32 NCHW: one conversion and one fused multiply-add."""
    return torch.addcmul(shift, images.to(torch.float32), scale)


def resize_batch(images: Tensor, image_size: int) -> Tensor:
    """A float NCHW batch resized to image_size (bilinear; antialiased when shrinking)."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    shrinking = images.shape[-1] > image_size
    return F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=shrinking
    )


def preprocess_image(
    image: Image.Image,
    *,
    in_channels: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> Tensor:
    """One PIL image as the model's CHW float input (normalised), on the CPU."""
    scale, shift = normalization_tensors(mean, std, torch.device("cpu"))
    batch = image_to_uint8(image, in_channels=in_channels, image_size=image_size)[None]
    return normalize_batch(batch, scale, shift)[0]

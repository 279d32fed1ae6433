from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnq.jobs.checkpoint import LoadedModel, ModelInfo
from cnnq.jobs.gradcam import gradcam, overlay
from cnnq.models.registry import build_model


class BlobDetector(nn.Module):
    """A hand-built net: a strided 5x5 'bright spot' filter, global average pooling, and two logits,
    `spot` (rises with bright spots) and `plain` (falls with them)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 1, 5, stride=2, padding=2), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.features[0].weight.fill_(1 / 25)
            self.features[0].bias.fill_(-0.5)
            self.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def _loaded(model: nn.Module, size: int, classes: list[str]) -> LoadedModel:
    info = ModelInfo("blob", 1, size, classes, (0.0,), (1.0,))
    return LoadedModel(model=model.eval(), info=info, path=Path("none.pt"), device=torch.device("cpu"))


def _image_with_blob(height: int, width: int, centre: tuple[int, int]) -> torch.Tensor:
    yy, xx = np.mgrid[0:height, 0:width]
    blob = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 16).astype(np.float32)
    return torch.from_numpy(blob)[None]  # 1 x H x W


@pytest.mark.parametrize("centre", [(12, 44), (48, 10)])
def test_heatmap_peaks_on_the_discriminative_blob(centre: tuple[int, int]) -> None:
    loaded = _loaded(BlobDetector(), 64, ["plain", "spot"])
    image = _image_with_blob(64, 64, centre)

    heatmap = gradcam(loaded, image)  # predicted class: spot

    assert heatmap.shape == (64, 64) and heatmap.dtype == np.float32
    assert heatmap.min() == pytest.approx(0.0) and heatmap.max() == pytest.approx(1.0)
    peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert abs(peak[0] - centre[0]) <= 3 and abs(peak[1] - centre[1]) <= 3
    distance = np.hypot(*(np.mgrid[0:64, 0:64] - np.array(centre)[:, None, None]))
    assert heatmap[distance > 14].max() < 0.1
    # For `plain` the blob is the evidence against: its map is cold there.
    assert gradcam(loaded, image, class_index=0)[centre] < 0.1


def test_works_on_a_registry_model_and_leaves_it_unchanged() -> None:
    torch.manual_seed(0)
    model = build_model("simple-cnn", in_channels=1, image_size=32, num_classes=2)
    loaded = _loaded(model, 32, ["NORMAL", "PNEUMONIA"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = torch.randn(1, 32, 32)
    with torch.inference_mode():  # as the dashboard might call it
        heatmap = gradcam(loaded, image, class_index=1)
    assert heatmap.shape == (32, 32)
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    with pytest.raises(ValueError, match="out of range"):
        gradcam(loaded, image, class_index=5)


def test_overlay_is_the_image_size_in_rgb_and_hot_where_the_map_is() -> None:
    picture = Image.new("L", (80, 40), 128)
    heatmap = np.zeros((32, 32), dtype=np.float32)
    heatmap[:, 16:] = 1.0  # right half hot
    blended = overlay(picture, heatmap)
    assert blended.mode == "RGB" and blended.size == (80, 40)
    pixels = np.asarray(blended).astype(int)
    left, right = pixels[20, 5], pixels[20, 75]
    assert right[0] > left[0] and left[2] > right[2]  # red on the right, blue on the left

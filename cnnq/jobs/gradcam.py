"""Grad-CAM: where in the image the model looked for a class (Selvaraju et al., 2017).

The last convolution's feature maps are weighted by the spatial mean of the class score's gradient
with respect to them; their positive sum, upsampled to the input, is the heatmap. `cnnq explain` and
the dashboard both call these two functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnq.jobs.checkpoint import LoadedModel
from cnnq.models.registry import last_conv_layer


def gradcam(loaded: LoadedModel, image: torch.Tensor, class_index: int | None = None) -> np.ndarray:
    """An H x W heatmap in [0, 1] (the input's size) for `class_index` (default: the predicted class).

    `image` is one preprocessed image, CHW or 1xCHW, as `preprocess_image` returns it.
    """
    model = loaded.model
    parameter = next(model.parameters())
    batch = (image if image.dim() == 4 else image.unsqueeze(0)).to(parameter.device, parameter.dtype)
    if batch.shape[0] != 1:
        raise ValueError(f"gradcam explains one image at a time, not {batch.shape[0]}")
    captured: dict[str, torch.Tensor] = {}

    def keep(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        captured["activations"] = output.detach().clone()
        output.register_hook(lambda gradient: captured.__setitem__("gradients", gradient.detach()))

    handle = last_conv_layer(model).register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # A graph is needed even if the weights are frozen.
            logits = model(batch.clone().requires_grad_(True))
            index = int(logits[0].argmax()) if class_index is None else class_index
            if not 0 <= index < logits.shape[1]:
                raise ValueError(f"class index {index} is out of range for {logits.shape[1]} classes")
            model.zero_grad(set_to_none=True)
            logits[0, index].backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)

    activations = captured["activations"][0].float()
    weights = captured["gradients"][0].float().mean(dim=(1, 2))
    cam = F.relu((weights[:, None, None] * activations).sum(dim=0))
    cam = F.interpolate(cam[None, None], size=batch.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam -= cam.min()
    peak = cam.max()
    if peak > 0:
        cam /= peak
    return cam.cpu().numpy().astype(np.float32)


def jet(values: np.ndarray) -> np.ndarray:
    """The jet colour map: [0, 1] -> uint8 RGB, blue (cold) through green to red (hot)."""
    x = np.clip(values, 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * x - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.4) -> Image.Image:
    """`image` (any mode) in RGB with the heatmap, stretched to its size, blended over it."""
    base = image.convert("RGB")
    stretched = Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize(
        base.size, Image.Resampling.BILINEAR
    )
    colours = Image.fromarray(jet(np.asarray(stretched)))
    return Image.blend(base, colours, alpha)

"""Grad-CAM: where in the image the model looked for a class (Selvaraju et al., 2017).

The last convolution's feature maps are weighted by the spatial mean of the class score's gradient
with respect to them; their positive sum, upsampled to the input, is the heatmap. `cnnq explain` and
the dashboard both call these two functions.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Explanation:
    """One image scored as a bulk job would score it, with the Grad-CAM of a class."""

    label: str
    score: float
    """The positive class's probability for two classes, else the label's (`cnnq.outputs`)."""
    probabilities: dict[str, float]
    threshold: float | None
    positive_class: str | None
    explained_class: str
    heatmap: np.ndarray


def explain_image(
    loaded: LoadedModel, image: Image.Image, class_name: str | None = None, name: str = "image"
) -> Explanation:
    """Label, probabilities and Grad-CAM of one image: what `cnnq explain` and the dashboard show."""
    from cnnq.data.transforms import preprocess_image
    from cnnq.errors import UserError
    from cnnq.jobs.infer import Decision

    tensor = preprocess_image(
        image,
        in_channels=loaded.info.in_channels,
        image_size=loaded.info.image_size,
        mean=loaded.info.mean,
        std=loaded.info.std,
    )
    with torch.inference_mode():
        logits = loaded.model(tensor[None].to(loaded.device))
    probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
    decision = Decision.for_model(loaded, None)
    row = decision.rows([name], probabilities)[0]
    assert row.label is not None and row.probabilities is not None and row.score is not None
    explained = class_name if class_name is not None else row.label
    if explained not in loaded.info.classes:
        raise UserError(f"--class {class_name}: the model's classes are {', '.join(loaded.info.classes)}")
    return Explanation(
        label=row.label,
        score=row.score,
        probabilities=row.probabilities,
        threshold=decision.threshold,
        positive_class=decision.positive_class,
        explained_class=explained,
        heatmap=gradcam(loaded, tensor, loaded.info.classes.index(explained)),
    )

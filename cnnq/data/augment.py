"""Training augmentation as Keras' ImageDataGenerator offers it, applied to whole batches on the device.

`--augment rotation=20,shift=0.1,flip,zoom=0.1`: rotation in degrees (uniform in +-rotation),
width/height shift as a fraction of the image (`shift` sets both, `wshift`/`hshift` one),
horizontal flip with probability 1/2, zoom fraction (x and y scale each uniform in 1 +- zoom).
Pixels pulled from outside the image repeat the nearest edge (Keras' fill_mode="nearest").

Random parameters are drawn on the CPU from a seeded `torch.Generator` for a whole pass at once
(`sample`), so a given (seed, epoch) gives the same augmentation on any device; `apply` then warps
a batch with one `affine_grid` + `grid_sample`. torch is imported where a batch is warped, so that
`cnnq submit` checks `--augment` (`parse_augment`) without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnq.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

_VALUED = {"rotation": 360.0, "shift": 1.0, "wshift": 1.0, "hshift": 1.0, "zoom": 0.9}
ACCEPTED = "rotation=DEGREES, shift=FRACTION, wshift=FRACTION, hshift=FRACTION, zoom=FRACTION, flip"

# Columns of the parameter tensor `sample` returns.
_ANGLE, _SHIFT_X, _SHIFT_Y, _ZOOM_X, _ZOOM_Y, _FLIP = range(6)


@dataclass(frozen=True)
class Augmentation:
    rotation: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    zoom: float = 0.0
    horizontal_flip: bool = False

    @property
    def warps(self) -> bool:
        return bool(self.rotation or self.width_shift or self.height_shift or self.zoom)

    @property
    def is_identity(self) -> bool:
        return not (self.warps or self.horizontal_flip)

    def sample(self, count: int, generator: torch.Generator) -> Tensor:
        """Per-sample parameters (count, 6) on the CPU: angle (rad), shifts, zooms, flip (0/1)."""
        import torch

        u = torch.rand(count, 6, generator=generator, dtype=torch.float32) * 2 - 1
        params = torch.empty(count, 6)
        params[:, _ANGLE] = u[:, _ANGLE] * math.radians(self.rotation)
        params[:, _SHIFT_X] = u[:, _SHIFT_X] * self.width_shift
        params[:, _SHIFT_Y] = u[:, _SHIFT_Y] * self.height_shift
        params[:, _ZOOM_X] = 1 + u[:, _ZOOM_X] * self.zoom
        params[:, _ZOOM_Y] = 1 + u[:, _ZOOM_Y] * self.zoom
        params[:, _FLIP] = (u[:, _FLIP] < 0).float() if self.horizontal_flip else 0.0
        return params

    def apply(self, images: Tensor, params: Tensor) -> Tensor:
        """Warp a float NCHW batch with `params` rows (from `sample`, already on its device)."""
        import torch
        import torch.nn.functional as F

        if self.is_identity:
            return images
        flip = params[:, _FLIP] > 0.5
        if not self.warps:
            return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        return F.grid_sample(
            images,
            F.affine_grid(_thetas(params), list(images.shape), align_corners=False),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return self.apply(images, self.sample(images.shape[0], generator).to(images.device))


def _thetas(params: Tensor) -> Tensor:
    """(N, 2, 3) maps from output to input coordinates: rotate . zoom . flip, then shift."""
    import torch

    cos, sin = torch.cos(params[:, _ANGLE]), torch.sin(params[:, _ANGLE])
    zx = params[:, _ZOOM_X] * (1 - 2 * params[:, _FLIP])
    zy = params[:, _ZOOM_Y]
    theta = torch.stack(
        [
            torch.stack([cos * zx, -sin * zy, 2 * params[:, _SHIFT_X]], dim=1),
            torch.stack([sin * zx, cos * zy, 2 * params[:, _SHIFT_Y]], dim=1),
        ],
        dim=1,
    )
    return theta


def parse_augment(text: str | None) -> Augmentation:
    """`rotation=20,shift=0.1,flip,zoom=0.1` (or `none`) -> Augmentation; UserError names a bad token."""
    if text is None or text.strip().lower() in ("", "none"):
        return Augmentation()
    values: dict[str, float] = {}
    flip = False
    for raw in text.split(","):
        token = raw.strip()
        name, _, value = token.partition("=")
        name = name.strip().lower()
        if name == "flip" and not value:
            flip = True
            continue
        if name not in _VALUED:
            raise UserError(f"--augment: unknown token {token!r}; accepted: {ACCEPTED}")
        try:
            number = float(value)
        except ValueError:
            raise UserError(
                f"--augment: {token!r} needs a number, e.g. {name}=0.1; accepted: {ACCEPTED}"
            ) from None
        if not 0 <= number <= _VALUED[name] or math.isnan(number):
            raise UserError(
                f"--augment: {token!r} is out of range 0..{_VALUED[name]:g}; accepted: {ACCEPTED}"
            )
        values[name] = number
    shift = values.get("shift", 0.0)
    return Augmentation(
        rotation=values.get("rotation", 0.0),
        width_shift=values.get("wshift", shift),
        height_shift=values.get("hshift", shift),
        zoom=values.get("zoom", 0.0),
        horizontal_flip=flip,
    )

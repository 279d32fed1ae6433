"""What a folder's images are, read from a sample, and the input (channels, square size) that follows.

A fixed, seeded sample of up to `SAMPLE_SIZE` files, spread evenly over the classes, is read: each
file's header gives its size and mode, and a colour file (RGB, palette, CMYK...) is decoded to see
whether its planes are equal (a grayscale image saved as RGB; within `PLANE_TOLERANCE` levels of
JPEG's rounding). What a job does not give follows from it:

- channels: 1 when every sampled image is grayscale (modes 1, L, LA, I, I;16, F, or equal planes),
  else 3;
- size: the shorter side of the most common size (every image is squashed to a square), at most
  `LARGEST_SIDE` (the torchvision nets' natural input; a classic net's classifier grows with the
  square of the side), and at least the model's smallest input (an upscale that is said);
- images of other sizes are resized to it, and a note says from which sizes.

The sample is read by the job, not by `cnnq submit`: telling grayscale from colour means decoding
hundreds of files (seconds on a network share), which the job reads anyway and a submit should not;
the files may also change between the two. What the job chose goes to its log and its result
(`cnnq show`); `cnnq data info` shows the same choice before any job runs.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnq.data.decode import load_image, open_image
from cnnq.data.image_folders import FileList
from cnnq.errors import UserError

SAMPLE_SIZE = 300
LARGEST_SIDE = 224
PLANE_TOLERANCE = 2
_SAMPLE_SEED = 0  # the same sample whatever the job's seed: a seed sweep keeps one input shape
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_PLANE_CHECK_SIDE = 64  # a JPEG is decoded at a reduced scale, never below this, to compare planes
_SIZES_SHOWN = 4


@dataclass(frozen=True)
class ImageSurvey:
    """Sizes (width, height) and modes of the sampled images, and how many were grayscale."""

    sampled: int
    classes: int
    sizes: Counter[tuple[int, int]]
    modes: Counter[str]
    grayscale: int

    @property
    def all_grayscale(self) -> bool:
        return self.grayscale == self.sampled

    @property
    def common_size(self) -> tuple[int, int]:
        """The most common (width, height); among equals, the larger."""
        return max(self.sizes.items(), key=lambda item: (item[1], item[0][0] * item[0][1]))[0]

    def describe(self) -> str:
        return (
            f"sampled {self.sampled} images over {self.classes} classes: sizes {sizes_text(self.sizes)}; "
            f"modes {', '.join(f'{mode} {n}' for mode, n in self.modes.most_common())}; "
            f"{self.grayscale} grayscale"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "sampled": self.sampled,
            "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.most_common()},
            "modes": dict(self.modes.most_common()),
            "grayscale": self.grayscale,
        }


@dataclass(frozen=True)
class InputChoice:
    channels: int
    image_size: int
    notes: list[str]
    """How each was chosen, one line each, for the job log and `cnnq data info`."""


def sizes_text(sizes: Counter[tuple[int, int]]) -> str:
    """`28x28 250, 32x32 40, 3 other sizes 10`."""
    ranked = sizes.most_common()
    shown = [f"{w}x{h} {n}" for (w, h), n in ranked[:_SIZES_SHOWN]]
    rest = ranked[_SIZES_SHOWN:]
    if rest:
        shown.append(f"{len(rest)} other sizes {sum(n for _, n in rest)}")
    return ", ".join(shown)


def sample_files(files: FileList, count: int = SAMPLE_SIZE) -> list[str]:
    """Up to `count` paths taken in turn from each class (each class's files in a seeded order)."""
    rng = np.random.default_rng(_SAMPLE_SEED)
    members = [rng.permutation(np.flatnonzero(files.labels == label)) for label in np.unique(files.labels)]
    picked: list[str] = []
    for rank in range(max((len(m) for m in members), default=0)):
        for indices in members:
            if rank < len(indices) and len(picked) < count:
                picked.append(files.paths[int(indices[rank])])
    return picked


def _look(path: str) -> tuple[tuple[int, int], str, bool] | None:
    """(size, mode, grayscale) of one file, or None when it cannot be read."""
    try:
        try:
            with open_image(path) as image:
                size, mode = image.size, image.mode
        except OSError:  # not a Pillow format (a DICOM file): its decoded size and mode
            decoded = load_image(path)
            size, mode = decoded.size, decoded.mode
        else:
            if mode in _GRAY_MODES:
                return size, mode, True
            decoded = load_image(path, min_size=_PLANE_CHECK_SIDE)
    except Exception:  # unreadable since it was indexed: the sample does without it
        return None
    if decoded.mode == "L":
        return size, mode, True
    planes = np.asarray(decoded, dtype=np.int16)
    spread = max(
        int(np.abs(planes[..., 0] - planes[..., 1]).max()), int(np.abs(planes[..., 1] - planes[..., 2]).max())
    )
    return size, mode, spread <= PLANE_TOLERANCE


def survey_files(files: FileList, *, workers: int = 2) -> ImageSurvey:
    """Read a sample of `files` (see the module docstring); UserError when none of it is readable."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        looks = [look for look in pool.map(_look, sample_files(files)) if look is not None]
    if not looks:
        raise UserError("none of the sampled images could be read; check the files under --data-root")
    return ImageSurvey(
        sampled=len(looks),
        classes=len(np.unique(files.labels)),
        sizes=Counter(size for size, _, _ in looks),
        modes=Counter(mode for _, mode, _ in looks),
        grayscale=sum(gray for _, _, gray in looks),
    )


def choose_input(
    survey: ImageSurvey, *, channels: int | None, image_size: int | None, model: str | None
) -> InputChoice:
    """Channels and size from the survey where not given, each with the line that says why."""
    notes = []
    if channels is None:
        channels = 1 if survey.all_grayscale else 3
        why = (
            "every sampled image is grayscale"
            if channels == 1
            else f"{survey.sampled - survey.grayscale} of {survey.sampled} sampled images are in colour"
        )
        notes.append(f"channels: {channels}, from the data ({why}); --channels to choose")
    if image_size is None:
        width, height = survey.common_size
        image_size = min(width, height)
        why = f"the most common size, {width}x{height}" + (", squashed" if width != height else "")
        if image_size > LARGEST_SIDE:
            image_size = LARGEST_SIDE
            why += f", capped at {LARGEST_SIDE}"
        smallest = _smallest_input(model)
        if image_size < smallest:
            why += f", upscaled to {smallest}: the smallest input {model} takes"
            image_size = smallest
        notes.append(f"image size: {image_size}x{image_size}, from the data ({why}); --image-size to choose")
    other = Counter({size: n for size, n in survey.sizes.items() if size != (image_size, image_size)})
    if other:
        notes.append(
            f"resizing to {image_size}x{image_size}: {other.total()} of {survey.sampled} sampled images "
            f"are other sizes ({sizes_text(other)})"
        )
    return InputChoice(channels, image_size, notes)


def _smallest_input(model: str | None) -> int:
    if model is None:
        return 1
    from cnnq.models.catalog import model_info

    return model_info(model).min_size

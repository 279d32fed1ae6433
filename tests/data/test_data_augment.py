"""Keras-style augmentation on whole batches: parsing, each transform, determinism, training only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnq.data.augment import Augmentation, parse_augment
from cnnq.data.registry import DataRequest, load_dataset
from cnnq.errors import UserError
from tests.sample_data import make_mnist

CPU = torch.device("cpu")


def test_parse_augment_reads_every_token() -> None:
    assert parse_augment("rotation=20,shift=0.1,flip,zoom=0.2") == Augmentation(
        rotation=20, width_shift=0.1, height_shift=0.1, zoom=0.2, horizontal_flip=True
    )
    assert parse_augment(" wshift=0.2 , hshift=0.05 ") == Augmentation(width_shift=0.2, height_shift=0.05)
    assert parse_augment(None).is_identity and parse_augment("").is_identity


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("rotation=20,blur=3", "'blur=3'"),
        ("rotate=20", "'rotate=20'"),
        ("zoom=lots", "'zoom=lots'"),
        ("shift=2", "'shift=2'"),
        ("flip=1", "'flip=1'"),
        ("rotation=-5", "'rotation=-5'"),
    ],
)
def test_parse_augment_refuses_bad_tokens_naming_them_and_the_accepted_ones(text: str, named: str) -> None:
    with pytest.raises(UserError) as error:
        parse_augment(text)
    message = str(error.value)
    assert message.startswith("--augment:") and named in message
    assert "rotation=DEGREES" in message and "flip" in message and "\n" not in message


def _pattern(count: int = 8, size: int = 16) -> torch.Tensor:
    """Distinct, left-right asymmetric images: value = column index + 100 * sample index."""
    columns = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size).expand(count, 1, size, size)
    return columns + 100 * torch.arange(count, dtype=torch.float32).view(-1, 1, 1, 1)


def test_flip_mirrors_some_images_and_leaves_the_others() -> None:
    images = _pattern(count=32)
    out = parse_augment("flip")(images, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], images[i].flip(-1)) for i in range(32)]
    kept = [torch.equal(out[i], images[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 4 < sum(flipped) < 28


def test_warped_flip_is_an_exact_mirror() -> None:
    augmentation = Augmentation(horizontal_flip=True, zoom=0.0, rotation=1e-9)
    images = _pattern(count=4)
    params = augmentation.sample(4, torch.Generator().manual_seed(1))
    params[:, 5] = 1.0  # flip every image
    assert torch.allclose(augmentation.apply(images, params), images.flip(-1), atol=1e-3)


def test_shift_moves_content_and_repeats_the_edge() -> None:
    augmentation = Augmentation(width_shift=0.25)
    images = _pattern(count=1)
    params = augmentation.sample(1, torch.Generator().manual_seed(0))
    params[0, 1] = 0.25  # sample from a quarter of the width to the right
    out = augmentation.apply(images, params)
    assert torch.allclose(out[0, 0, :, :12], images[0, 0, :, 4:], atol=1e-4)
    assert torch.allclose(out[0, 0, :, 12:], torch.full((16, 4), 15.0), atol=1e-4)  # border repeated


def test_rotation_and_zoom_change_images_but_keep_shape_and_range() -> None:
    images = _pattern(count=6)
    out = parse_augment("rotation=30,zoom=0.2")(images, torch.Generator().manual_seed(2))
    assert out.shape == images.shape
    assert all(not torch.allclose(out[i], images[i]) for i in range(6))
    per_image_min = images.amin(dim=(1, 2, 3))
    per_image_max = images.amax(dim=(1, 2, 3))
    assert torch.all(out.amin(dim=(1, 2, 3)) >= per_image_min - 1e-3)
    assert torch.all(out.amax(dim=(1, 2, 3)) <= per_image_max + 1e-3)


def _epoch(source, epoch: int | None) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    batches = list(source.batches(epoch))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_augmented_training_is_deterministic_per_seed_and_epoch_and_differs_across_epochs(
    tmp_path: Path,
) -> None:
    root = make_mnist(tmp_path, n_train=120, n_test=20)
    request = DataRequest("mnist", root, batch_size=32, augment="rotation=15,shift=0.1,zoom=0.1", seed=4)
    first, second = load_dataset(request, CPU), load_dataset(request, CPU)
    x1, y1 = _epoch(first.train, 3)
    x2, y2 = _epoch(second.train, 3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x_next, _ = _epoch(first.train, 4)
    assert not torch.allclose(x1, x_next)

    plain = load_dataset(DataRequest("mnist", root, batch_size=32, seed=4), CPU)
    x_plain, y_plain = _epoch(plain.train, 3)
    assert torch.equal(y1, y_plain)  # the same order: augmentation does not change which samples
    assert not torch.allclose(x1, x_plain)


def test_augmentation_is_for_training_only(tmp_path: Path) -> None:
    root = make_mnist(tmp_path, n_train=120, n_test=20)
    augmented = load_dataset(DataRequest("mnist", root, batch_size=32, augment="rotation=30,flip"), CPU)
    plain = load_dataset(DataRequest("mnist", root, batch_size=32), CPU)
    assert augmented.test is not None and plain.test is not None
    for split in ("val", "test"):
        for epoch in (None, 2):
            assert torch.equal(
                _epoch(getattr(augmented, split), epoch)[0], _epoch(getattr(plain, split), epoch)[0]
            )
    # batches(None) of the training split: in order and not augmented
    assert torch.equal(_epoch(augmented.train, None)[0], _epoch(plain.train, None)[0])
    assert not torch.equal(_epoch(augmented.train, 2)[0], _epoch(plain.train, 2)[0])

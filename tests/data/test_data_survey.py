"""A folder's input from its own images: channels and size from a sample, said in the notes; small
sets held in memory, larger ones streamed, both giving the same batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnq.data.registry import DataRequest, load_dataset
from cnnq.data.survey import LARGEST_SIDE, sample_files, survey_files
from cnnq.settings import parse_bytes, reload_settings

CPU = torch.device("cpu")
Draw = Callable[[int, int, np.random.Generator], Image.Image]


def gray(label: int, index: int, rng: np.random.Generator, size: int = 12) -> Image.Image:
    pixels = rng.integers(0, 60, (size, size), dtype=np.uint8)
    pixels[label * 3 : label * 3 + 3] = 220  # a bright band whose row says the class
    return Image.fromarray(pixels, "L")


def write_folder(root: Path, draw: Draw, *, classes: int = 3, per_class: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw(label, index, rng).save(folder / f"{index:03d}.png")
    return root


def load(root: Path, **options: object):  # type: ignore[no-untyped-def]
    return load_dataset(DataRequest("folder", root, num_workers=0, **options), CPU)  # type: ignore[arg-type]


def test_a_grayscale_folder_is_one_channel_at_its_own_size(tmp_path: Path) -> None:
    def mixed_gray(label: int, index: int, rng: np.random.Generator) -> Image.Image:
        image = gray(label, index, rng)
        if index % 3 == 1:  # grayscale saved as RGB: three equal planes
            return image.convert("RGB")
        if index % 3 == 2:  # 16-bit grayscale
            return Image.fromarray(np.asarray(image).astype(np.uint16) * 256)
        return image

    bundle = load(write_folder(tmp_path / "gray", mixed_gray))
    assert (bundle.in_channels, bundle.image_size) == (1, 12)
    assert bundle.mean == (0.5,) and bundle.survey["grayscale"] == bundle.survey["sampled"] == 24
    assert set(bundle.survey["modes"]) == {"L", "RGB", "I;16"}
    assert any("channels: 1, from the data (every sampled image is grayscale)" in n for n in bundle.notes)
    assert any("image size: 12x12, from the data" in note for note in bundle.notes)
    assert not any("resizing" in note for note in bundle.notes)
    images, _ = next(bundle.train.batches(0))
    assert images.shape[1:] == (1, 12, 12)
    assert bundle.summary()["input"] == "1x12x12"


def test_an_rgb_folder_is_three_channels(tmp_path: Path) -> None:
    def colour(label: int, index: int, rng: np.random.Generator) -> Image.Image:
        pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        if label == 0:  # one colour class among grayscale-looking ones is enough
            return Image.fromarray(pixels, "RGB")
        return Image.fromarray(np.repeat(pixels[..., :1], 3, axis=2), "RGB")

    bundle = load(write_folder(tmp_path / "rgb", colour))
    assert (bundle.in_channels, bundle.image_size) == (3, 16)
    assert any("channels: 3, from the data (8 of 24 sampled images are in colour)" in n for n in bundle.notes)
    assert next(bundle.val.batches(None))[0].shape[1:] == (3, 16, 16)


def test_mixed_sizes_resize_to_the_most_common_and_say_from_what(tmp_path: Path) -> None:
    def sized(label: int, index: int, rng: np.random.Generator) -> Image.Image:
        side = (20, 20, 20, 16, 24)[index % 5]
        return gray(label, index, rng, size=side)

    bundle = load(write_folder(tmp_path / "mixed", sized, per_class=10))
    assert (bundle.in_channels, bundle.image_size) == (1, 20)
    resized = [note for note in bundle.notes if note.startswith("resizing")]
    assert resized == ["resizing to 20x20: 12 of 30 sampled images are other sizes (16x16 6, 24x24 6)"]
    assert bundle.survey["sizes"] == {"20x20": 18, "16x16": 6, "24x24": 6}
    assert {x.shape[-1] for x, _ in bundle.train.batches(1)} == {20}


def test_given_channels_and_size_win_and_a_model_minimum_is_an_upscale_that_is_said(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "small", gray)
    given = load(root, channels=3, image_size=28)
    assert (given.in_channels, given.image_size, given.survey) == (3, 28, None)
    assert not any("from the data" in note for note in given.notes)

    vgg = load(root, model="vgg11")  # the small-input VGG takes 16x16 at least
    assert vgg.image_size == 16
    assert any("upscaled to 16: the smallest input vgg11 takes" in note for note in vgg.notes)


def test_large_images_are_capped_at_the_torchvision_input(tmp_path: Path) -> None:
    def large(label: int, index: int, rng: np.random.Generator) -> Image.Image:
        return Image.new("L", (LARGEST_SIDE + 76, LARGEST_SIDE + 36), color=label * 80)

    bundle = load(write_folder(tmp_path / "large", large, classes=2, per_class=2))
    assert bundle.image_size == LARGEST_SIDE
    assert any(f"300x260, squashed, capped at {LARGEST_SIDE}" in note for note in bundle.notes)


def test_the_sample_is_spread_over_the_classes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "many", gray, classes=4, per_class=30)
    bundle = load(root, image_size=12, channels=1)
    files = bundle.train.files + bundle.val.files
    picked = sample_files(files, count=20)
    assert len(set(picked)) == 20
    assert sorted(Path(p).parent.name for p in picked) == [f"class{c}" for c in range(4) for _ in range(5)]
    assert survey_files(files).sampled == 120  # fewer files than a full sample: all of them


@pytest.mark.parametrize("augment", [None, "rotation=10,shift=0.1,zoom=0.1,flip"])
def test_held_and_streamed_sets_give_identical_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, augment: str | None
) -> None:
    root = write_folder(tmp_path / "tree", gray, per_class=11)
    options = {"batch_size": 8, "seed": 5, "augment": augment}
    held = load(root, **options)
    monkeypatch.setenv("CNNQ_CACHE_MEMORY", "0")
    reload_settings()
    streamed = load(root, **options)
    monkeypatch.delenv("CNNQ_CACHE_MEMORY")
    reload_settings()

    assert held.held_in_memory and not streamed.held_in_memory
    assert any(note.startswith("held in memory: 33 images") for note in held.notes)
    assert any(note.startswith("streamed: decoded, the images would take") for note in streamed.notes)
    for split in ("train", "val"):
        for epoch in (None, 1, 2):
            ours = list(getattr(held, split).batches(epoch))
            theirs = list(getattr(streamed, split).batches(epoch))
            assert len(ours) == len(theirs) > 0
            for (x1, y1), (x2, y2) in zip(ours, theirs, strict=True):
                assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # From a batch on, as a run resumed mid-epoch asks: the tail of the full pass.
    tail, whole = list(held.train.batches(2, skip=1)), list(streamed.train.batches(2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(tail, whole[1:], strict=True))


def test_cache_memory_reads_sizes() -> None:
    assert parse_bytes("4GiB") == 4 * 2**30 and parse_bytes("512MB") == 512 * 10**6
    assert parse_bytes("1.5 gb") == 1_500_000_000 and parse_bytes("1000") == 1000
    with pytest.raises(ValueError, match="512MiB"):
        parse_bytes("lots")


def test_batched_augmentation_of_a_folder_is_a_function_of_seed_and_epoch(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "tree", gray, per_class=11)
    options = {"batch_size": 8, "augment": "rotation=10,shift=0.1,zoom=0.1,flip"}

    def epoch(bundle, number: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return torch.cat([x for x, _ in bundle.train.batches(number)])

    first, again, other_seed = (
        load(root, seed=1, **options),
        load(root, seed=1, **options),
        load(root, seed=2, **options),
    )
    plain = load(root, seed=1, batch_size=8)
    assert torch.equal(epoch(first, 3), epoch(again, 3))
    assert not torch.equal(epoch(first, 3), epoch(first, 4))
    assert not torch.equal(epoch(first, 3), epoch(plain, 3))
    assert not torch.equal(epoch(first, 3)[:8], epoch(other_seed, 3)[:8])


def test_show_and_the_job_log_say_what_the_data_chose(  # type: ignore[no-untyped-def]
    tmp_path: Path, cli, use_settings
) -> None:
    use_settings(CNNQ_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    root = write_folder(tmp_path / "gray", gray)
    done = cli(
        "run", "train", "--model", "lenet", "--dataset", "folder", "--data-root", root, "--epochs", "1"
    )
    assert done.code == 0, done.stderr
    [job] = json.loads(cli("jobs", "--json").stdout)
    shown = cli("show", job["id"]).stdout
    [data_row] = [line for line in shown.splitlines() if line.startswith("data ")]
    assert "1x12x12, memory" in data_row
    assert "channels: 1, from the data" in " ".join(shown.split())  # folded over lines by the table
    logs = cli("logs", job["id"]).stdout
    assert "image size: 12x12, from the data" in logs and "channels: 1, from the data" in logs

from __future__ import annotations

import re
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnq.data.decode import ImageDecodeError, ImageTooLarge, load_image
from tests.sample_dicom import dicom_header, write_dicom
from tests.sample_poison import write_huge_png, write_lying_dicom


def _gray(size: int = 32) -> np.ndarray:
    """A horizontal ramp 0..255 with a bright square: easy to check after a round trip."""
    ramp = np.tile(np.linspace(0, 255, size).astype(np.uint8), (size, 1))
    ramp[8:16, 8:16] = 255
    return ramp


def test_8bit_grayscale_png_and_jpeg(tmp_path: Path) -> None:
    pixels = _gray()
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
    png = load_image(tmp_path / "a.png")
    jpeg = load_image(tmp_path / "a.jpg")
    assert png.mode == jpeg.mode == "L"
    assert np.array_equal(np.asarray(png), pixels)
    assert np.abs(np.asarray(jpeg).astype(int) - pixels).mean() < 4


def test_rgb_rgba_and_palette_become_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    for name in ("rgb.png", "rgba.png", "p.png"):
        image = load_image(tmp_path / name)
        assert image.mode == "RGB", name
        assert np.asarray(image)[0, 0, 0] > 150 and np.asarray(image)[0, 0, 1] < 50, name


def test_16bit_png_is_scaled_over_its_range_not_clipped(tmp_path: Path) -> None:
    full = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    twelve_bit = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (8, 1))
    Image.fromarray(full).save(tmp_path / "full.png")
    Image.fromarray(twelve_bit).save(tmp_path / "twelve.png")
    assert Image.open(tmp_path / "full.png").mode.startswith("I")
    for name in ("full.png", "twelve.png"):
        image = load_image(tmp_path / name)
        values = np.asarray(image)[0].astype(int)
        assert image.mode == "L"
        assert values[0] == 0 and values[-1] == 255
        assert np.all(np.diff(values) >= 0)
        # Clipping would turn everything above 255 white; scaling keeps the middle grey.
        assert 120 <= values[32] <= 136, name


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    red = Image.new("RGB", (16, 16), (220, 20, 20)).convert("CMYK")
    red.save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    image = load_image(tmp_path / "cmyk.jpg")
    r, g, b = np.asarray(image)[8, 8]
    assert image.mode == "RGB"
    assert r > 180 and g < 70 and b < 70


def test_large_jpeg_is_decoded_at_reduced_scale_but_never_below_min_size(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 384), dtype=np.uint8)).save(
        tmp_path / "big.jpg"
    )
    assert load_image(tmp_path / "big.jpg").size == (384, 512)
    small = load_image(tmp_path / "big.jpg", min_size=64)
    assert min(small.size) >= 64 and small.size[0] < 384


def _hounsfield_like(tmp_path: Path, photometric: str) -> np.ndarray:
    """Stored 824 | 1024 | 1224 with intercept -1024 and a window of [-200, 200] in rescaled units."""
    stored = np.full((8, 12), 1024, dtype=np.uint16)
    stored[:, :4] = 824
    stored[:, 8:] = 1224
    path = write_dicom(
        tmp_path / f"{photometric}.dcm",
        stored,
        photometric=photometric,
        slope=1.0,
        intercept=-1024.0,
        window=(0.0, 400.0),
    )
    image = load_image(path)
    assert image.mode == "L"
    return np.asarray(image)


def test_dicom_monochrome2_applies_modality_then_voi_lut(tmp_path: Path) -> None:
    pixels = _hounsfield_like(tmp_path, "MONOCHROME2")
    # Without the modality LUT the window [-200, 200] would saturate all three bands alike.
    assert pixels[0, 0] == 0
    assert 110 <= pixels[0, 5] <= 145
    assert pixels[0, 10] == 255


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    pixels = _hounsfield_like(tmp_path, "MONOCHROME1")
    assert pixels[0, 0] == 255
    assert 110 <= pixels[0, 5] <= 145
    assert pixels[0, 10] == 0


def test_dicom_rescale_slope_without_window_uses_the_full_range(tmp_path: Path) -> None:
    stored = np.tile(np.linspace(0, 4095, 32).astype(np.uint16), (4, 1))
    image = load_image(write_dicom(tmp_path / "ramp.dcm", stored, slope=2.0, intercept=-100.0))
    values = np.asarray(image)[0].astype(int)
    assert values[0] == 0 and values[-1] == 255 and np.all(np.diff(values) > 0)


def test_dicom_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 2] = 250
    image = load_image(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    assert image.mode == "RGB" and tuple(np.asarray(image)[0, 0]) == (0, 0, 250)


def test_dicom_without_preamble_or_suffix_is_still_read(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "ramp.dcm", np.tile(np.arange(16, dtype=np.uint16) * 200, (4, 1)))
    (tmp_path / "IM0001").write_bytes(path.read_bytes())  # archives often drop the suffix
    assert np.asarray(load_image(tmp_path / "IM0001"))[0, -1] == 255


def _jpeg_bytes(tmp_path: Path) -> bytes:
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "whole.jpg", quality=90
    )
    return (tmp_path / "whole.jpg").read_bytes()


def _png_bytes(tmp_path: Path) -> bytes:
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "whole.png"
    )
    return (tmp_path / "whole.png").read_bytes()


def _dicom_without_pixels(path: Path) -> None:
    dataset = dicom_header(path)
    dataset.PatientID = "TEST"
    dataset.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.png", lambda p, t: p.write_bytes(b""), "empty file"),
        ("notes.jpg", lambda p, t: p.write_text("patient list\nsee ward 4\n"), "not an image: text file"),
        ("notes.txt", lambda p, t: p.write_text("hello"), "not an image: text file"),
        ("binary.png", lambda p, t: p.write_bytes(bytes(range(256)) * 4), "not an image: unknown format"),
        (
            "half.jpg",
            lambda p, t: p.write_bytes(_jpeg_bytes(t)[: len(_jpeg_bytes(t)) // 2]),
            "truncated image",
        ),
        ("half.png", lambda p, t: p.write_bytes(_png_bytes(t)[: len(_png_bytes(t)) // 2]), "truncated image"),
        ("header.png", lambda p, t: p.write_bytes(_png_bytes(t)[:20]), "truncated image"),
        ("text.dcm", lambda p, t: p.write_text("not dicom at all"), "not an image: not a DICOM file"),
        ("nopixels.dcm", lambda p, t: _dicom_without_pixels(p), "unsupported DICOM: no pixel data"),
    ],
)
def test_unreadable_inputs_raise_a_short_reason(tmp_path: Path, name: str, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    make(path, tmp_path)
    with pytest.raises(ImageDecodeError) as raised:
        load_image(path)
    assert raised.value.reason == reason


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="file not found"):
        load_image(tmp_path / "gone.png")
    with pytest.raises(ImageDecodeError, match="not an image: a folder"):
        load_image(tmp_path)


# --- Poison inputs: refused from their headers, before a pixel is decoded -------------------------


@pytest.fixture
def max_pixels(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """`max_pixels(n)` sets CNNQ_MAX_IMAGE_PIXELS for this test; the default and Pillow's limit come back."""
    from cnnq.settings import reload_settings

    pillow_limit = Image.MAX_IMAGE_PIXELS

    def apply(cap: int) -> None:
        monkeypatch.setenv("CNNQ_MAX_IMAGE_PIXELS", str(cap))
        reload_settings()

    yield apply
    monkeypatch.delenv("CNNQ_MAX_IMAGE_PIXELS", raising=False)
    reload_settings()
    Image.MAX_IMAGE_PIXELS = pillow_limit


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_13000x13000_16bit_png_is_refused_from_its_header(tmp_path: Path) -> None:
    # 169 million pixels: over twice the default cap of 50 million, where Pillow itself refuses
    # before it says the size. Decoding it would take 338 MB as pixels, 1.35 GB as float64.
    path = write_huge_png(tmp_path / "huge.png", 13000, 13000)
    before = _peak_rss_mb()
    with pytest.raises(ImageTooLarge) as raised:
        load_image(path, min_size=224)
    assert raised.value.reason == "too large: 13000x13000"
    assert _peak_rss_mb() - before < 150, "the image was decoded"
    assert Image.MAX_IMAGE_PIXELS == 50_000_000  # Pillow's own guard is set to the same cap


def test_the_cap_comes_from_the_settings_on_both_sides_of_pillows_limit(
    tmp_path: Path, max_pixels: Callable[[int], None]
) -> None:
    max_pixels(50_000)
    # 60,000 pixels: over the cap but under twice it, where Pillow only warns: cnnq's own check.
    over = write_huge_png(tmp_path / "over.png", 300, 200)
    # 1,000,000 pixels: over twice the cap, where Pillow raises first; the size is still reported.
    far_over = tmp_path / "far_over.jpg"
    Image.new("L", (1000, 1000), 128).save(far_over)
    under = np.tile(np.linspace(0, 65535, 200).astype(np.uint16), (200, 1))  # 40,000 pixels, 16-bit
    Image.fromarray(under).save(tmp_path / "under.png")

    with pytest.raises(ImageTooLarge, match=r"^too large: 300x200$"):
        load_image(over)
    with pytest.raises(ImageTooLarge, match=r"^too large: 1000x1000$"):
        load_image(far_over, min_size=32)
    image = load_image(tmp_path / "under.png")
    values = np.asarray(image)[0].astype(int)
    assert image.mode == "L" and image.size == (200, 200)
    assert values[0] == 0 and values[-1] == 255 and 120 <= values[100] <= 136
    assert Image.MAX_IMAGE_PIXELS == 50_000


def test_a_dicom_declaring_65535x65535_is_refused_before_its_pixel_data(tmp_path: Path) -> None:
    path = write_lying_dicom(tmp_path / "lying.dcm", 65535, 65535)
    assert path.stat().st_size < 2000
    before = _peak_rss_mb()
    with pytest.raises(ImageTooLarge) as raised:
        load_image(path)
    assert raised.value.reason == "too large: 65535x65535"
    assert _peak_rss_mb() - before < 150


def test_a_multiframe_dicom_counts_every_frame_against_the_cap(tmp_path: Path) -> None:
    path = write_lying_dicom(tmp_path / "cine.dcm", 512, 512, frames=300)  # 78.6 million pixels
    with pytest.raises(ImageTooLarge, match=r"^too large: 512x512x300 frames$"):
        load_image(path)


def test_a_dicom_that_declares_more_pixel_data_than_it_holds_is_refused_as_truncated(tmp_path: Path) -> None:
    # Under the cap (4 million pixels), but its 64 bytes of pixel data cannot be 2000x2000 16-bit pixels.
    lying = write_lying_dicom(tmp_path / "lying.dcm", 2000, 2000, pixel_bytes=64)
    with pytest.raises(ImageDecodeError) as raised:
        load_image(lying)
    found = re.fullmatch(
        r"truncated image: the DICOM header declares 8000000 bytes of pixel data, the file holds (\d+)",
        raised.value.reason,
    )
    assert found is not None, raised.value.reason
    assert 64 <= int(found.group(1)) <= 68

    whole = write_dicom(tmp_path / "whole.dcm", np.ones((64, 64), np.uint16))
    (tmp_path / "cut.dcm").write_bytes(whole.read_bytes()[:-2000])  # a copy cut short
    with pytest.raises(ImageDecodeError, match=r"^truncated image: the DICOM header declares 8192 bytes"):
        load_image(tmp_path / "cut.dcm")
    assert np.asarray(load_image(whole)).shape == (64, 64)  # the whole file still decodes


def test_training_folders_skip_an_image_over_the_cap_with_its_reason(tmp_path: Path) -> None:
    import torch

    from cnnq.data.registry import DataRequest, load_dataset
    from tests.sample_data import make_image_folder

    tree = make_image_folder(tmp_path / "tree", per_class=6, size=16)
    huge = write_huge_png(tree / "cat" / "huge.png", 13000, 13000)
    bundle = load_dataset(DataRequest("folder", tree, image_size=16, num_workers=0), torch.device("cpu"))
    assert bundle.skipped == [(str(huge), "too large: 13000x13000")]
    kept = bundle.train.files.paths + bundle.val.files.paths
    assert len(kept) == 12 and str(huge) not in kept
    assert any("skipped 1 unreadable file" in note for note in bundle.notes)

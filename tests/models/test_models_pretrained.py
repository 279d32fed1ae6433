"""Pretrained weights come from a local file only: --weights, or torchvision's hub cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from cnnq.errors import UserError
from cnnq.models.registry import build_model, check_model
from cnnq.models.weights import cached_weights_path, weights_url

RESNET18_FILE = "resnet18-f37072fd.pth"


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision's own resnet18, seeded, with non-trivial BatchNorm statistics, saved as a state dict."""
    torch.manual_seed(1234)
    model = torchvision.models.resnet18()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("weights") / RESNET18_FILE
    torch.save(model.state_dict(), path)
    return path


def _saved(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def test_weights_file_is_loaded_tensor_for_tensor(resnet18_weights: Path) -> None:
    model = build_model(
        "resnet18", in_channels=3, image_size=64, num_classes=1000, pretrained=True, weights=resnet18_weights
    )
    saved = _saved(resnet18_weights)
    assert model.state_dict().keys() == saved.keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[key]), key


def test_a_new_head_starts_fresh_and_the_small_input_stem_keeps_its_weights(resnet18_weights: Path) -> None:
    model = build_model(
        "resnet18", in_channels=3, image_size=32, num_classes=10, pretrained=True, weights=resnet18_weights
    )
    saved = _saved(resnet18_weights)
    assert model.fc.weight.shape == (10, 512)
    assert model.conv1.stride == (1, 1)
    for key, tensor in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(tensor, saved[key]), key


def test_grayscale_folds_the_rgb_filters_into_one_channel(resnet18_weights: Path) -> None:
    gray = build_model(
        "resnet18", in_channels=1, image_size=64, num_classes=1000, pretrained=True, weights=resnet18_weights
    ).eval()
    rgb = build_model(
        "resnet18", in_channels=3, image_size=64, num_classes=1000, pretrained=True, weights=resnet18_weights
    ).eval()
    saved = _saved(resnet18_weights)
    assert torch.equal(gray.conv1.weight, saved["conv1.weight"].sum(dim=1, keepdim=True))
    for key, tensor in gray.state_dict().items():
        if key != "conv1.weight":
            assert torch.equal(tensor, saved[key]), key
    image = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(image), rgb(image.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)


def test_vgg_backbone_weights_load_and_fold_without_a_classifier_in_the_file(tmp_path: Path) -> None:
    torch.manual_seed(7)
    source = build_model("vgg11", in_channels=3, image_size=32, num_classes=10)
    path = tmp_path / "vgg11-features.pth"
    torch.save({k: v for k, v in source.state_dict().items() if k.startswith("features.")}, path)
    model = build_model("vgg11", in_channels=1, image_size=28, num_classes=2, pretrained=True, weights=path)
    assert torch.equal(model.features[0].weight, source.features[0].weight.sum(dim=1, keepdim=True))
    assert torch.equal(model.features[18].weight, source.features[18].weight)


def test_pretrained_comes_from_the_torch_hub_cache(
    resnet18_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / RESNET18_FILE
    assert cached_weights_path("resnet18") == expected
    expected.parent.mkdir(parents=True)
    shutil.copy(resnet18_weights, expected)

    check_model("resnet18", in_channels=1, image_size=28, pretrained=True)
    model = build_model(
        "resnet18", in_channels=3, image_size=64, num_classes=1000, pretrained=True, freeze_backbone=True
    )
    saved = _saved(resnet18_weights)
    assert all(torch.equal(t, saved[k]) for k, t in model.state_dict().items())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}


def test_missing_cached_weights_say_exactly_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / RESNET18_FILE
    for attempt in (
        lambda: check_model("resnet18", in_channels=3, image_size=224, pretrained=True),
        lambda: build_model("resnet18", in_channels=3, image_size=32, num_classes=2, pretrained=True),
    ):
        with pytest.raises(UserError) as refused:
            attempt()
        message = str(refused.value)
        assert str(expected) in message
        assert weights_url("resnet18") in message
        assert "\n" not in message
    assert not expected.exists()  # nothing was downloaded


def test_a_missing_weights_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(UserError, match="is not a file") as refused:
        check_model("resnet18", in_channels=3, image_size=32, pretrained=True, weights=missing)
    assert str(missing) in str(refused.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"these are not weights", "cannot load weights file"),
        ({"epoch": 3}, "does not hold a state dict"),
        (
            {"conv1.weight": torch.zeros(64, 3, 3, 3)},
            r"conv1.weight is \(64, 3, 3, 3\), expected \(64, 3, 7, 7\)",
        ),
        ({"fc.weight": torch.zeros(1000, 512)}, "does not hold resnet18 weights: it has no conv1.weight"),
    ],
)
def test_unusable_weights_files_are_refused_at_submit(tmp_path: Path, content: object, problem: str) -> None:
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(UserError, match=problem) as refused:
        check_model("resnet18", in_channels=3, image_size=224, pretrained=True, weights=path)
    assert str(path) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_weights_in_the_legacy_pickle_format_load_too(resnet18_weights: Path, tmp_path: Path) -> None:
    """torchvision's older published files predate the zip format, which cannot be memory-mapped."""
    saved = _saved(resnet18_weights)
    legacy = tmp_path / "resnet18-legacy.pth"
    torch.save(saved, legacy, _use_new_zipfile_serialization=False)
    model = build_model(
        "resnet18", in_channels=3, image_size=32, num_classes=2, pretrained=True, weights=legacy
    )
    assert torch.equal(model.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])

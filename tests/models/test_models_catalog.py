"""The zoo's torch-free table (`catalog`, `backbones`, weights paths) agrees with the nets torch builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from cnnq.errors import UserError
from cnnq.models.backbones import backbone_shapes
from cnnq.models.catalog import HEAD, TORCHVISION_MODELS, model_info, model_names
from cnnq.models.registry import build_model
from cnnq.models.torchvision_zoo import build_torchvision_model
from cnnq.models.weights import cached_weights_path, check_model, torch_hub_dir, weights_url


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 32), (1, 224), (3, 224)])
def test_backbone_table_is_the_built_nets_state_dict_less_its_head(
    name: str, channels: int, side: int
) -> None:
    with torch.device("meta"):
        model = build_model(name, in_channels=channels, image_size=side, num_classes=10)
    head = HEAD[model_info(name).family]
    built = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(f"{head}.")}
    assert backbone_shapes(name, channels) == built


@pytest.mark.parametrize("name", model_names())
def test_table_entries_match_the_nets(name: str) -> None:
    info = model_info(name)
    channels, side, _ = info.default_input
    with torch.device("meta"):
        model = build_model(name, in_channels=channels, image_size=side, num_classes=info.default_classes)
        assert model(torch.empty(1, *info.default_input)).shape == (1, info.default_classes)
    if info.pretrained:
        assert weights_url(name) == torchvision.models.get_model_weights(name).DEFAULT.url
        with torch.device("meta"):
            reference = torchvision.models.get_model(name, weights=None)
            ours = build_torchvision_model(name, in_channels=3, image_size=224, num_classes=1000)
        assert str(ours) == str(reference)


@pytest.mark.parametrize(
    "variables",
    [{}, {"TORCH_HOME": "/opt/torch-home"}, {"XDG_CACHE_HOME": "/var/cache/x"}, {"TORCH_HOME": "~/th"}],
)
def test_the_weights_cache_is_where_torch_hub_looks(
    variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    assert torch_hub_dir() == Path(torch.hub.get_dir())
    assert cached_weights_path("vgg16").parent == Path(torch.hub.get_dir()) / "checkpoints"


@pytest.fixture(scope="module")
def vgg11_features(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    model = build_model("vgg11", in_channels=3, image_size=32, num_classes=10)
    return {k: v for k, v in model.state_dict().items() if k.startswith("features.")}


@pytest.mark.parametrize("legacy", [False, True])
def test_the_check_at_submit_reads_both_torch_file_formats(
    vgg11_features: dict[str, torch.Tensor], tmp_path: Path, legacy: bool
) -> None:
    path = tmp_path / "vgg11.pth"
    torch.save(vgg11_features, path, _use_new_zipfile_serialization=not legacy)
    check_model("vgg11", in_channels=1, image_size=28, pretrained=True, weights=path)
    build_model("vgg11", in_channels=1, image_size=28, num_classes=2, pretrained=True, weights=path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.pop("features.8.weight"), "it has no features.8.weight"),
        (
            lambda s: s.update({"features.3.bias": torch.zeros(64)}),
            r"features.3.bias is \(64,\), expected \(128,\)",
        ),
    ],
)
def test_the_check_at_submit_refuses_what_loading_refuses(
    vgg11_features: dict[str, torch.Tensor], tmp_path: Path, change: object, problem: str
) -> None:
    state = dict(vgg11_features)
    change(state)  # type: ignore[operator]
    path = tmp_path / "vgg11.pth"
    torch.save(state, path)
    for attempt in (
        lambda: check_model("vgg11", in_channels=3, image_size=32, pretrained=True, weights=path),
        lambda: build_model(
            "vgg11", in_channels=3, image_size=32, num_classes=2, pretrained=True, weights=path
        ),
    ):
        with pytest.raises(UserError, match=problem):
            attempt()

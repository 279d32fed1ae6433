"""Every model builds, runs forward to (N, classes) and refuses inputs it cannot take."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnq.errors import UserError
from cnnq.models import classic
from cnnq.models.catalog import TORCHVISION_MODELS
from cnnq.models.registry import build_model, check_model, head_of, last_conv_layer, model_info, model_names
from cnnq.models.torchvision_zoo import build_torchvision_model

CLASSIC = ["simple-cnn", "cifar-cnn", "mnist-cnn", "lenet"]


def _logits(model: nn.Module, channels: int, side: int, batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, channels, side, side))


def test_the_zoo_has_every_model_the_issue_names() -> None:
    assert set(model_names()) == {*CLASSIC, *TORCHVISION_MODELS}
    assert {"alexnet", "resnet18", "vgg11", "vgg13_bn", "vgg16", "vgg19_bn"} <= set(TORCHVISION_MODELS)


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 32)])
def test_builds_and_classifies_small_images(name: str, channels: int, side: int) -> None:
    model = build_model(name, in_channels=channels, image_size=side, num_classes=7)
    logits = _logits(model, channels, side)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("name", "channels"), [("alexnet", 3), ("resnet18", 1), ("resnet18", 3)])
def test_torchvision_nets_classify_224_images(name: str, channels: int) -> None:
    model = build_model(name, in_channels=channels, image_size=224, num_classes=5)
    assert _logits(model, channels, 224, batch=1).shape == (1, 5)


@pytest.mark.slow
def test_vgg_classifies_a_224_grayscale_image() -> None:
    model = build_model("vgg11_bn", in_channels=1, image_size=224, num_classes=3)
    assert _logits(model, 1, 224, batch=1).shape == (1, 3)


def test_from_64_pixels_up_the_torchvision_net_is_unchanged() -> None:
    ours = build_model("alexnet", in_channels=3, image_size=64, num_classes=1000)
    with torch.device("meta"):
        reference = torchvision.models.alexnet()
    assert str(ours) == str(reference)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


def test_small_inputs_keep_detail_instead_of_downsampling_it_away() -> None:
    resnet = build_model("resnet18", in_channels=3, image_size=32, num_classes=10)
    assert resnet.conv1.stride == (1, 1) and resnet.conv1.kernel_size == (7, 7)
    assert isinstance(resnet.maxpool, nn.Identity)
    vgg = build_model("vgg", in_channels=3, image_size=28, num_classes=10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in vgg.features) == 4  # 28 -> 14 -> 7 -> 3 -> 1
    assert vgg.classifier[0].in_features == 512


def _build_unchecked(name: str, side: int) -> nn.Module:
    if name in CLASSIC:
        return getattr(classic, name.replace("-", "_"))(3, side, 10)
    return build_torchvision_model(name, in_channels=3, image_size=side, num_classes=10)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("name", model_names())
def test_min_size_is_the_smallest_input_the_net_takes(name: str) -> None:
    smallest = model_info(name).min_size
    check_model(name, in_channels=3, image_size=smallest)
    with torch.device("meta"):
        assert _build_unchecked(name, smallest)(torch.empty(2, 3, smallest, smallest)).shape == (2, 10)
        if smallest > 8:  # 8 is the floor cnnq's specs allow anyway
            with pytest.raises(RuntimeError):
                _build_unchecked(name, smallest - 1)(torch.empty(2, 3, smallest - 1, smallest - 1))
    with pytest.raises(UserError, match=f"at least {smallest}x{smallest}"):
        check_model(name, in_channels=3, image_size=smallest - 1)


@pytest.mark.parametrize(
    ("typo", "suggestion"), [("vgg61", "vgg16"), ("resnet", "resnet18"), ("lenet5", "lenet")]
)
def test_unknown_names_are_refused_with_the_closest_names(typo: str, suggestion: str) -> None:
    with pytest.raises(UserError, match="unknown model") as refused:
        check_model(typo, in_channels=3, image_size=32)
    assert suggestion in str(refused.value)
    assert "\n" not in str(refused.value)


def test_vgg_means_vgg16() -> None:
    with torch.device("meta"):
        alias = build_model("vgg", in_channels=3, image_size=224, num_classes=1000)
        vgg16 = build_model("vgg16", in_channels=3, image_size=224, num_classes=1000)
    assert str(alias) == str(vgg16)


@pytest.mark.parametrize("name", CLASSIC)
def test_pretrained_is_refused_for_the_classic_nets(name: str) -> None:
    with pytest.raises(UserError, match=f"{name} has no pretrained weights") as refused:
        check_model(name, in_channels=1, image_size=28, pretrained=True)
    assert "resnet18" in str(refused.value)


def test_pretrained_takes_one_or_three_channels_and_weights_need_pretrained(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="1 or 3 channels"):
        check_model("resnet18", in_channels=4, image_size=32, pretrained=True)
    with pytest.raises(UserError, match="--weights only makes sense with --pretrained"):
        check_model("resnet18", in_channels=3, image_size=32, weights=tmp_path / "w.pth")


@pytest.mark.parametrize(
    ("name", "head"), [("resnet18", "fc"), ("vgg11", "classifier"), ("lenet", "classifier")]
)
def test_freeze_backbone_trains_only_the_head(name: str, head: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=1, image_size=28, num_classes=3, freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{head}.{n}" for n, _ in head_of(model).named_parameters()}
    assert trainable and len(trainable) < len(list(model.parameters()))

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


def test_last_conv_layer_is_the_grad_cam_target() -> None:
    resnet = build_model("resnet18", in_channels=1, image_size=28, num_classes=2)
    assert last_conv_layer(resnet) is resnet.layer4[1].conv2
    alexnet = build_model("alexnet", in_channels=3, image_size=32, num_classes=2)
    assert last_conv_layer(alexnet) is alexnet.features[10]
    simple = build_model("simple-cnn", in_channels=1, image_size=28, num_classes=2)
    assert last_conv_layer(simple) is simple.features[3]
    with pytest.raises(ValueError, match="no Conv2d"):
        last_conv_layer(nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["simple-cnn", "mnist-cnn", "cifar-cnn"])
def test_pooling_before_relu_is_the_tutorial_net_exactly(name: str) -> None:
    """The classic nets max-pool before their ReLU; the tutorials' order (ReLU, then pool) must give the
    same outputs and the same gradients from the same weights, and read the same model files."""
    torch.manual_seed(0)
    ours = build_model(name, in_channels=3, image_size=32, num_classes=10)
    tutorial = build_model(name, in_channels=3, image_size=32, num_classes=10)
    layers = list(tutorial.features)
    for index, layer in enumerate(layers[:-1]):
        if isinstance(layer, nn.MaxPool2d) and isinstance(layers[index + 1], nn.ReLU):
            layers[index], layers[index + 1] = layers[index + 1], layer
    assert layers != list(ours.features), "no max-pool came before a ReLU"
    tutorial.features = nn.Sequential(*layers)
    tutorial.load_state_dict(ours.state_dict())  # the same keys
    ours.eval()
    tutorial.eval()
    images = torch.randn(8, 3, 32, 32)
    ours_out, tutorial_out = ours(images), tutorial(images)
    assert torch.equal(ours_out, tutorial_out)
    ours_out.square().sum().backward()
    tutorial_out.square().sum().backward()
    for (key, mine), theirs in zip(ours.named_parameters(), tutorial.parameters(), strict=True):
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-5, atol=1e-6), key

"""Layer-by-layer summaries: shapes, parameters, receptive fields and MACs checked against hand counts
and torchvision's published figures."""

from __future__ import annotations

import pytest
from torch import nn
from torchvision.models import get_model_weights

from cnnq.models.catalog import TORCHVISION_MODELS
from cnnq.models.describe import describe_model, layer_rows


def test_a_small_net_matches_the_hand_computation() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),  # rf 3, jump 1
        nn.ReLU(),
        nn.MaxPool2d(2),  # rf 3 + 1*1 = 4, jump 2
        nn.Conv2d(4, 8, 3, dilation=2),  # effective kernel 5: rf 4 + 4*2 = 12, jump 2
        nn.Conv2d(8, 8, 3, stride=2),  # rf 12 + 2*2 = 16, jump 4
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    rows = layer_rows(net, (1, 16, 16))
    assert [r.receptive_field for r in rows] == [3, 3, 4, 12, 16, None, None]
    assert [r.output_shape for r in rows] == [
        (4, 14, 14),
        (4, 14, 14),
        (4, 7, 7),
        (8, 3, 3),
        (8, 1, 1),
        (8,),
        (2,),
    ]
    assert [r.params for r in rows] == [4 * 9 + 4, 0, 0, 8 * 4 * 9 + 8, 8 * 8 * 9 + 8, 0, 8 * 2 + 2]
    assert [r.macs for r in rows] == [4 * 14 * 14 * 9, 0, 0, 8 * 3 * 3 * 4 * 9, 8 * 8 * 9, 0, 16]
    assert net.training  # describing does not leave the model in eval mode


def test_simple_cnn_on_mnist_by_hand() -> None:
    summary = describe_model("simple-cnn", in_channels=1, image_size=28, num_classes=10)
    rows = {r.name: r for r in summary.layers}
    assert rows["features.0"].output_shape == (32, 26, 26)
    assert rows["features.5"].output_shape == (64, 5, 5)
    # conv, pool, ReLU, conv, pool, ReLU (pooled before the ReLU: cnnq.models.classic)
    assert [rows[f"features.{i}"].receptive_field for i in range(6)] == [3, 4, 4, 8, 10, 10]
    assert summary.total_params == (32 * 9 + 32) + (64 * 32 * 9 + 64) + (1600 * 64 + 64) + (64 * 10 + 10)
    assert summary.macs == 32 * 26 * 26 * 9 + 64 * 11 * 11 * 32 * 9 + 1600 * 64 + 64 * 10
    assert summary.flops == 2 * summary.macs


@pytest.mark.parametrize(
    ("name", "params", "last_pool_rf"), [("alexnet", 61_100_840, 195), ("vgg16", 138_357_544, 212)]
)
def test_published_figures_at_224(name: str, params: int, last_pool_rf: int) -> None:
    summary = describe_model(name, in_channels=3, image_size=224, num_classes=1000)
    assert summary.total_params == summary.trainable_params == params
    pools = [r for r in summary.layers if r.kind == "MaxPool2d"]
    assert pools[-1].receptive_field == last_pool_rf
    assert summary.layers[-1].output_shape == (1000,)


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_every_torchvision_model_matches_torchvisions_own_metadata(name: str) -> None:
    meta = get_model_weights(name).DEFAULT.meta
    summary = describe_model(name, in_channels=3, image_size=224, num_classes=1000)
    assert summary.total_params == meta["num_params"]
    assert summary.macs / 1e9 == pytest.approx(meta["_ops"], abs=0.001)  # torchvision's GFLOPS are MACs


def test_residual_branches_take_the_widest_receptive_field() -> None:
    summary = describe_model("resnet18", in_channels=3, image_size=224, num_classes=1000)
    rows = {r.name: r for r in summary.layers}
    assert rows["layer2.0.downsample.0"].receptive_field == 43  # the shortcut sees less
    assert rows["layer2.0.conv2"].receptive_field == 67
    assert rows["layer4.1.conv2"].receptive_field == 435
    assert rows["avgpool"].receptive_field is None


def test_small_inputs_are_described_as_the_small_variant() -> None:
    summary = describe_model("vgg16", in_channels=1, image_size=32, num_classes=10)
    assert "small-input" in summary.variant and "first conv takes 1 channel" in summary.variant
    assert summary.input_shape == (1, 32, 32)
    rows = {r.name: r for r in summary.layers}
    assert rows["features.29"].output_shape == (512, 2, 2)
    assert rows["classifier.3"].output_shape == (10,)


@pytest.mark.timeout(60)
def test_describing_computes_nothing() -> None:
    """At 2048x2048 VGG-19 is ~1.6 TMACs and 16 GB of activations: only the meta device gets through."""
    summary = describe_model("vgg19_bn", in_channels=3, image_size=2048, num_classes=1000)
    assert summary.layers[0].output_shape == (64, 2048, 2048)
    assert summary.macs > 1.5e12

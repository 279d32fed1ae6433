"""`cnnq models` and `cnnq models describe` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from cnnq.models.registry import model_names


def test_models_lists_the_zoo_as_json(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("models", "--json")
    assert result.code == 0, result.stderr
    models = {m["name"]: m for m in json.loads(result.stdout)}
    assert list(models) == model_names()
    assert models["resnet18"]["pretrained"] is True
    assert models["resnet18"]["weights_file"].endswith("checkpoints/resnet18-f37072fd.pth")
    assert models["vgg16"]["aliases"] == ["vgg"]
    assert models["simple-cnn"]["pretrained"] is False
    assert models["simple-cnn"]["weights_file"] is None
    assert models["mnist-cnn"]["default_input"] == [1, 28, 28]
    assert models["cifar-cnn"]["default_input"] == [3, 32, 32]
    assert models["alexnet"]["default_input"] == [3, 224, 224]


def test_models_prints_a_table(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("models")
    assert result.code == 0, result.stderr
    for name in model_names():
        assert name in result.stdout
    assert "vgg16 (vgg)" in result.stdout


def test_describe_alexnet_prints_its_published_size(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("models", "describe", "alexnet", "--input", "3x224x224", "--classes", "1000")
    assert result.code == 0, result.stderr
    assert "61,100,840" in result.stdout
    assert "714,188,480" in result.stdout  # MACs
    assert "1,428,376,960" in result.stdout  # FLOPs = 2 x MACs
    assert "features.12" in result.stdout


def test_describe_json(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("models", "describe", "vgg", "--input", "3x224x224", "--classes", "1000", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["model"] == "vgg16"
    assert summary["total_params"] == 138_357_544
    assert summary["flops"] == 2 * summary["macs"]
    assert summary["layers"][0] == {
        "name": "features.0",
        "kind": "Conv2d",
        "output_shape": [64, 224, 224],
        "params": 1792,
        "receptive_field": 3,
        "macs": 64 * 224 * 224 * 27,
    }


def test_describe_defaults_to_the_models_own_input(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("models", "describe", "lenet", "--json")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["input_shape"] == [1, 28, 28]
    assert summary["num_classes"] == 10
    assert summary["total_params"] == 61_706


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("alexnte",), "did you mean alexnet"),
        (("alexnet", "--input", "3x224"), "--input: expected"),
        (("alexnet", "--input", "3x224x200"), "square"),
        (("vgg16", "--input", "3x8x8"), "at least 16x16"),
        (("alexnet", "--classes", "0"), "--classes"),
        (("alexnet", "--classes", "many"), "--classes"),
    ],
)
def test_describe_refuses_bad_arguments_in_one_line(cli, args: tuple[str, ...], problem: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("models", "describe", *args)
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error:")
    assert problem in result.stderr
    assert result.stderr.strip().count("\n") == 0

"""Each model's default recipe: options a train job's user leaves out come from it, given ones win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnq.cli.models import _recipes_text
from cnnq.cli.spec_options import build_spec
from cnnq.data.augment import parse_augment
from cnnq.jobs.spec import TrainSpec, parse_spec
from cnnq.jobs.train import make_optimizer
from cnnq.models.recipes import RECIPES
from tests.sample_data import make_mnist


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("mnist"), n_train=64, n_test=16)


def train_options(root: Path, **given: object) -> dict[str, object]:
    """What the CLI hands `build_spec`: every option, None where the user gave none."""
    options: dict[str, object] = {name: None for name in TrainSpec.model_fields if name != "kind"}
    return options | {"model": "mnist-cnn", "dataset": "mnist", "data_root": root} | given


def test_the_cli_fills_left_out_options_from_the_models_recipe(tiny_mnist: Path) -> None:
    spec = build_spec(TrainSpec, train_options(tiny_mnist))
    assert (spec.optimizer, spec.augment) == ("adam", "rotation=10,shift=0.1")
    assert spec.schedule == "onecycle" and spec.weight_decay is None  # not in the recipe: the base

    lenet = build_spec(TrainSpec, train_options(tiny_mnist, model="lenet"))
    assert (lenet.optimizer, lenet.augment) == ("sgd", None)


def test_given_options_win_over_the_recipe_and_none_turns_augmentation_off(tiny_mnist: Path) -> None:
    spec = build_spec(TrainSpec, train_options(tiny_mnist, optimizer="sgd", augment="none"))
    assert (spec.optimizer, spec.augment) == ("sgd", "none")
    assert parse_augment(spec.augment).is_identity


def test_a_stored_spec_reads_back_unchanged_even_where_it_differs_from_the_recipe(tiny_mnist: Path) -> None:
    spec = TrainSpec(model="mnist-cnn", dataset="mnist", data_root=tiny_mnist, optimizer="sgd", augment=None)
    assert parse_spec(json.loads(spec.model_dump_json())) == spec
    assert spec.augment is None  # given as None: no recipe augmentation


@pytest.mark.parametrize(
    ("optimizer", "given", "expected"),
    [("sgd", None, 5e-4), ("adam", None, 0.0), ("adamw", None, 1e-2), ("adam", 0.03, 0.03)],
)
def test_weight_decay_defaults_per_optimizer(
    tiny_mnist: Path, optimizer: str, given: float | None, expected: float
) -> None:
    spec = TrainSpec(
        model="lenet", dataset="mnist", data_root=tiny_mnist, optimizer=optimizer, weight_decay=given
    )
    built = make_optimizer(spec, torch.nn.Linear(2, 2))
    assert built.param_groups[0]["weight_decay"] == expected


def test_a_recipe_is_for_its_data_and_a_folder_gets_no_augmentation_unasked(tmp_path: Path) -> None:
    def spec(dataset: str, **given: object) -> TrainSpec:
        options = {"model": "mnist-cnn", "dataset": dataset, "data_root": tmp_path}
        return TrainSpec.model_validate(options | given)

    assert (spec("mnist").optimizer, spec("mnist").augment) == ("adam", "rotation=10,shift=0.1")
    for dataset in ("folder", "xray", "cifar10"):
        assert (spec(dataset).optimizer, spec(dataset).augment) == ("adam", None)  # Adam: its dropout
    assert spec("folder", augment="rotation=10").augment == "rotation=10"


def test_models_json_shows_each_models_recipe_per_dataset(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("models", "--json")
    assert result.code == 0, result.stderr
    recipes = {m["name"]: m["recipes"] for m in json.loads(result.stdout)}
    assert recipes["mnist-cnn"]["mnist"] == RECIPES["mnist-cnn", "mnist"]
    assert recipes["mnist-cnn"]["folder"] == {"optimizer": "adam"}
    assert recipes["lenet"] == {"mnist": {}, "cifar10": {}, "folder": {}, "xray": {}}
    assert _recipes_text(recipes["mnist-cnn"]) == (
        "mnist: --optimizer adam --augment rotation=10,shift=0.1; cifar10, folder, xray: --optimizer adam"
    )
    assert _recipes_text(recipes["lenet"]) == "base"

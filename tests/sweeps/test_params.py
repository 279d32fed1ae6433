"""`cnnq sweep`'s input: every refused input is one line and exit 2, before anything is recorded; what it
accepts becomes the sweep's spec (trial 0 the recipe, choices typed as their options)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cnnq.errors import UserError
from cnnq.jobs.spec import TrainSpec
from cnnq.sweeps.params import build_sweep, parse_param, parse_values, read_config

BASE = ["--model", "lenet", "--dataset", "mnist", "--limit", "500", "--epochs", "2"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--param", "lrr=loguniform:1e-4:1e-1"], "--param lrr: not a train option"),
        (["--param", "lr=normal:0:1"], "unknown distribution 'normal'"),
        (["--param", "lr=loguniform:0.1:0.001"], "the range is empty"),
        (["--param", "momentum=uniform:0.9:0.9"], "the range is empty"),
        (["--param", "lr=loguniform:0:1"], "a log scale starts above 0"),
        (["--param", "lr=loguniform:1e-4:100"], "lr=100.0 is refused"),
        (["--param", "batch_size=uniform:16:64"], "batch_size takes whole numbers"),
        (["--param", "optimizer=choice:adam,rmsprop"], "'rmsprop' is not a valid optimizer"),
        (["--param", "optimizer=uniform:1:2"], "optimizer is not a number"),
        (["--param", "lr=choice:"], "list at least one value"),
        (["--param", "lr"], "write NAME=DISTRIBUTION:ARGUMENTS"),
        (["--param", "image_size=choice:4,28"], "image_size=4 is refused"),
        (["--param", "lr=loguniform:1e-3:1e-1", "--lr", "0.1"], "also given as a fixed option --lr"),
        (
            ["--param", "lr=loguniform:1e-3:1e-1", "--metric", "accuracy"],
            "--metric: 'accuracy' is not reported",
        ),
        (["--param", "lr=loguniform:1e-3:1e-1", "--metric", "test_accuracy"], "pruning needs one of"),
        (["--param", "lr=loguniform:1e-3:1e-1", "--sampler", "grid"], "is a continuous range"),
        (["--param", "batch_size=choice:32,64", "--sampler", "grid", "--trials", "5"], "give at most 3"),
        (["--param", "lr=loguniform:1e-3:1e-1", "--direction", "up"], "--direction:"),
        (["--param", "lr=loguniform:1e-3:1e-1", "--prune", "fast"], "--prune:"),
        (["--param", "lr=loguniform:1e-3:1e-1", "--enqueue", "momentum=0.9"], "not a --param of this sweep"),
        (
            ["--param", "lr=loguniform:1e-3:1e-1", "--config", "/nonexistent/sweep.yaml"],
            "--config: cannot read",
        ),
        ([], "give at least one --param"),
    ],
)
def test_a_refused_sweep_is_one_line_and_exit_2(
    cli: Any, cnnq_env: dict[str, str], args: list[str], says: str
) -> None:
    result = cli("sweep", *BASE, *args)
    assert result.code == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_choice_is_checked_against_the_zoo(cli: Any, cnnq_env: dict[str, str]) -> None:
    result = cli("sweep", "--dataset", "mnist", "--param", "model=choice:lenet,nosuch")
    assert result.code == 2 and "unknown model 'nosuch'" in result.stderr


def test_choices_take_their_options_types_and_trial_0_is_the_recipe(mnist_root: Path) -> None:
    train = {"model": "mnist-cnn", "dataset": "mnist", "data_root": str(mnist_root), "epochs": 3}
    params = [
        parse_param("lr=loguniform:1e-4:1e-1"),
        parse_param("batch-size=choice:32,64,128"),
        parse_param("augment=choice:none|rotation=10,shift=0.1"),
        parse_param("patience=choice:none,2"),
        parse_param("momentum=uniform:0.8:0.9"),
    ]
    spec = build_sweep(
        TrainSpec.model_validate(train), train, params, [parse_values("lr=0.01;batch_size=32")], {}
    )
    assert spec.param("batch_size").choices == [32, 64, 128]
    assert spec.param("augment").choices == ["none", "rotation=10,shift=0.1"]
    assert spec.param("patience").choices == [None, 2]
    # trial 0: mnist-cnn's recipe (Adam's default lr, its augmentation), then the enqueued trial
    assert spec.enqueue[0] == {
        "lr": 0.003, "batch_size": 64, "augment": "rotation=10,shift=0.1", "patience": None, "momentum": 0.95,
    }  # fmt: skip
    assert spec.enqueue[1]["lr"] == 0.01 and spec.enqueue[1]["batch_size"] == 32
    assert (spec.trials, spec.parallel, spec.metric, spec.direction, spec.prune, spec.sampler) == (
        20, 2, "val_accuracy", "maximize", "asha", "tpe",
    )  # fmt: skip
    # the recipe's momentum lies outside the space: trial 0 trains with it, the study does not hold it
    assert not spec.param("momentum").contains(0.95) and spec.param("lr").contains(0.003)


def test_a_loss_is_minimized_and_a_grid_is_counted() -> None:
    train = {"model": "lenet", "dataset": "mnist", "data_root": "/data"}
    base = TrainSpec.model_validate(train)
    params = [parse_param("batch_size=choice:32,64"), parse_param("epochs=int:1:3")]
    spec = build_sweep(base, train, params, [], {"metric": "val_loss", "sampler": "grid"})
    assert spec.direction == "minimize"
    assert spec.trials == 2 * 3 + 1  # the grid, and trial 0
    with pytest.raises(UserError, match="given twice"):
        build_sweep(
            base, train, [parse_param("lr=uniform:0.01:0.1"), parse_param("lr=uniform:0.1:0.2")], [], {}
        )


def test_a_config_file_gives_train_options_params_and_settings(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "model: lenet\ndataset: mnist\nepochs: 4\ntrials: 12\nparallel: 3\nprune: hyperband\n"
        "params:\n  lr: loguniform:1e-4:1e-1\n  batch-size: [32, 64]\n"
        "enqueue:\n  - {lr: 0.05, batch_size: 32}\n"
    )
    settings, train = read_config(config)
    assert train == {"model": "lenet", "dataset": "mnist", "epochs": 4}
    assert settings["trials"] == 12 and settings["prune"] == "hyperband"
    assert [p.text for p in settings["params"]] == ["lr=loguniform:0.0001:0.1", "batch_size=choice:32,64"]
    assert settings["enqueue"] == [{"lr": 0.05, "batch_size": 32}]
    config.write_text("model: lenet\nlearning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown key 'learning_rate'"):
        read_config(config)

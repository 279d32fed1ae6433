"""Every bad option is refused at submit time with one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnq.cli.spec_options import build_spec
from cnnq.errors import UserError
from cnnq.jobs.checkpoint import ModelInfo, save_model_file
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec, parse_spec
from cnnq.jobs.validate import validate_spec
from tests.sample_data import make_mnist


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("mnist"), n_train=20, n_test=10)


def refusal(options: dict[str, object]) -> str:
    with pytest.raises(UserError) as error:
        build_spec(TrainSpec, options)
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_a_good_train_spec_passes(tiny_mnist: Path) -> None:
    spec = build_spec(TrainSpec, {"model": "lenet", "dataset": "mnist", "data_root": tiny_mnist})
    assert isinstance(spec, TrainSpec) and spec.data_root == tiny_mnist


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"model": "lenett"}, "lenet"),
        ({"dataset": "cifar10"}, "cifar"),
        ({"data_root": Path("/nonexistent/cnnq-data")}, "/nonexistent/cnnq-data"),
        ({"augment": "wobble=3"}, "wobble"),
        ({"weights": Path("/tmp/w.pt")}, "--weights"),
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"optimizer": "lbfgs"}, "--optimizer"),
        ({"threshold": "youden", "target_sensitivity": 0.9}, "not both"),
        ({"threshold": "1.5"}, "--threshold"),
        ({"threshold": "median"}, "--threshold"),
    ],
)
def test_bad_train_options_are_refused_in_one_line(
    tiny_mnist: Path, options: dict[str, object], expected: str
) -> None:
    base: dict[str, object] = {"model": "lenet", "dataset": "mnist", "data_root": tiny_mnist}
    assert expected in refusal(base | options)


def test_a_threshold_is_one_number_in_every_spec_and_old_stored_specs_still_load() -> None:
    """The glossary's names (`model_file`, `inputs`, a float threshold) are what a spec stores; specs
    stored under the old ones (`checkpoint`, `checkpoint_sha256`, `paths`, a threshold as text) load."""
    old = {"kind": "infer", "model_from": "x", "checkpoint": "/m/best.pt", "checkpoint_sha256": "ab"}
    spec = parse_spec(old | {"input": "/in", "paths": ["/in/a.png"], "threshold": 0.25})
    assert isinstance(spec, InferSpec)
    assert (spec.model_file, spec.model_file_sha256, spec.inputs) == (Path("/m/best.pt"), "ab", ["/in/a.png"])
    stored = spec.model_dump(mode="json")
    assert {"model_file", "model_file_sha256", "inputs"} <= set(stored) and "checkpoint" not in stored
    assert parse_spec(stored) == spec
    train = {"kind": "train", "model": "lenet", "dataset": "mnist", "data_root": "/d"}
    assert parse_spec(train | {"threshold": "0.3"}).threshold == 0.3  # stored as text before
    assert parse_spec(train | {"threshold": "youden"}).threshold == "youden"
    evaluation = parse_spec({"kind": "eval", "model_from": "x", "checkpoint": "/m/best.pt", "threshold": "0"})
    assert isinstance(evaluation, EvalSpec) and evaluation.threshold == 0.0


def test_eval_and_infer_refuse_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "best.pt"
    bogus.write_bytes(b"not a checkpoint")
    for spec in (
        EvalSpec(model_from="x", model_file=bogus),
        InferSpec(model_from="x", model_file=bogus, input=str(tmp_path)),
    ):
        with pytest.raises(UserError, match="not a readable cnnq checkpoint"):
            validate_spec(spec)
    torch.save({"weights": torch.ones(1)}, bogus)
    with pytest.raises(UserError, match="not a cnnq model file"):
        validate_spec(EvalSpec(model_from="x", model_file=bogus))


def test_eval_needs_a_dataset_it_can_find(tmp_path: Path, tiny_mnist: Path) -> None:
    info = ModelInfo(
        model="lenet",
        in_channels=1,
        image_size=28,
        classes=[str(d) for d in range(10)],
        mean=(0.1,),
        std=(0.3,),
    )
    path = save_model_file(tmp_path / "best.pt", torch.nn.Linear(1, 1), info)
    with pytest.raises(UserError, match="--dataset"):
        validate_spec(EvalSpec(model_from="x", model_file=path))
    validate_spec(EvalSpec(model_from="x", model_file=path, dataset="mnist", data_root=tiny_mnist))
    with pytest.raises(UserError):
        validate_spec(
            EvalSpec(model_from="x", model_file=path, dataset="mnist", data_root=tmp_path / "empty")
        )

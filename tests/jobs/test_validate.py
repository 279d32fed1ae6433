"""Every bad option is refused at submit time with one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnq.cli.spec_options import build_spec
from cnnq.errors import UserError
from cnnq.jobs.checkpoint import ModelInfo, save_model_file
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec
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
    ],
)
def test_bad_train_options_are_refused_in_one_line(
    tiny_mnist: Path, options: dict[str, object], expected: str
) -> None:
    base: dict[str, object] = {"model": "lenet", "dataset": "mnist", "data_root": tiny_mnist}
    assert expected in refusal(base | options)


def test_eval_and_infer_refuse_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "best.pt"
    bogus.write_bytes(b"not a checkpoint")
    for spec in (
        EvalSpec(model_from="x", checkpoint=bogus),
        InferSpec(model_from="x", checkpoint=bogus, input=str(tmp_path)),
    ):
        with pytest.raises(UserError, match="not a readable cnnq checkpoint"):
            validate_spec(spec)
    torch.save({"weights": torch.ones(1)}, bogus)
    with pytest.raises(UserError, match="not a cnnq model file"):
        validate_spec(EvalSpec(model_from="x", checkpoint=bogus))


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
        validate_spec(EvalSpec(model_from="x", checkpoint=path))
    validate_spec(EvalSpec(model_from="x", checkpoint=path, dataset="mnist", data_root=tiny_mnist))
    with pytest.raises(UserError):
        validate_spec(
            EvalSpec(model_from="x", checkpoint=path, dataset="mnist", data_root=tmp_path / "empty")
        )

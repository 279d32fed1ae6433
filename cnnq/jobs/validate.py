"""Checks on a spec that need the file system or the model zoo, run at submit time."""

from __future__ import annotations

from pathlib import Path

from cnnq.errors import UserError
from cnnq.jobs.checkpoint import ModelInfo, read_model_file
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec


def validate_spec(spec: TrainSpec | EvalSpec | InferSpec) -> None:
    """Raise `UserError` naming the problem and its fix; return quietly when the job can run."""
    if isinstance(spec, TrainSpec):
        _validate_train(spec)
    elif isinstance(spec, EvalSpec):
        _validate_eval(spec)
    else:
        _model_info(spec.checkpoint)
        if spec.output is not None and spec.output.is_dir():
            example = spec.output / "predictions.csv"
            raise UserError(f"--output: {spec.output} is a folder; name a file in it, like {example}")


def _validate_train(spec: TrainSpec) -> None:
    from cnnq.data.augment import parse_augment
    from cnnq.data.registry import check_dataset, dataset_facts
    from cnnq.jobs.train import data_request
    from cnnq.models.registry import check_model

    if spec.weights is not None and not spec.weights.is_file():
        raise UserError(
            f"--weights: {spec.weights} is not a file; give the path of a downloaded weights file"
        )
    request = data_request(spec)
    check_dataset(request)
    facts = dataset_facts(spec.dataset)
    check_model(
        spec.model,
        in_channels=facts.channels,
        image_size=spec.image_size or facts.image_size,
        pretrained=spec.pretrained,
        weights=spec.weights,
    )
    if spec.augment is not None:
        parse_augment(spec.augment)


def _validate_eval(spec: EvalSpec) -> None:
    from cnnq.data.registry import DataRequest, check_dataset

    info = _model_info(spec.checkpoint)
    dataset = spec.dataset or info.dataset
    root = spec.data_root or info.data_root
    if dataset is None or root is None:
        raise UserError(
            f"{spec.checkpoint} does not say which dataset it was trained on; give --dataset and --data-root"
        )
    check_dataset(
        DataRequest(dataset=dataset, root=Path(root), image_size=spec.image_size or info.image_size)
    )


def _model_info(path: Path) -> ModelInfo:
    info, _ = read_model_file(path)
    return info

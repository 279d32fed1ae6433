"""Checks on a spec that need the file system or the model zoo, run at submit time.

Nothing here imports torch: the zoo's constraints come from `cnnq.models.catalog`, the datasets'
from `cnnq.data.catalog`, and a model file's metadata from `read_model_info`, so `cnnq submit`
starts as fast as the CLI's own dependencies allow.
"""

from __future__ import annotations

from pathlib import Path

from cnnq.data.catalog import DataRequest, check_dataset, dataset_facts
from cnnq.errors import UserError
from cnnq.jobs.model_info import read_model_info
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec, data_request
from cnnq.models.catalog import model_info
from cnnq.models.weights import check_model


def validate_spec(spec: TrainSpec | EvalSpec | InferSpec) -> None:
    """Raise `UserError` naming the problem and its fix; return quietly when the job can run."""
    if isinstance(spec, TrainSpec):
        _validate_train(spec)
    elif isinstance(spec, EvalSpec):
        _validate_eval(spec)
    else:
        read_model_info(spec.model_file)
        if spec.output is not None and spec.output.is_dir():
            example = spec.output / "predictions.csv"
            raise UserError(f"--output: {spec.output} is a folder; name a file in it, like {example}")


def _validate_train(spec: TrainSpec) -> None:
    if spec.weights is not None and not spec.weights.is_file():
        raise UserError(
            f"--weights: {spec.weights} is not a file; give the path of a downloaded weights file"
        )
    check_dataset(data_request(spec))
    facts = dataset_facts(spec.dataset)
    # A folder's size and channels come from its images in the job, which raises a size below the
    # model's smallest input to it (and says so): nothing of them to check here.
    check_model(
        spec.model,
        in_channels=spec.channels or facts.channels or 3,
        image_size=spec.image_size or facts.image_size or model_info(spec.model).min_size,
        pretrained=spec.pretrained,
        weights=spec.weights,
    )


def _validate_eval(spec: EvalSpec) -> None:
    info = read_model_info(spec.model_file)
    dataset = spec.dataset or info.dataset
    root = spec.data_root or info.data_root
    if dataset is None or root is None:
        raise UserError(
            f"{spec.model_file} does not say which dataset it was trained on; give --dataset and --data-root"
        )
    check_dataset(
        DataRequest(dataset=dataset, root=Path(root), image_size=spec.image_size or info.image_size)
    )

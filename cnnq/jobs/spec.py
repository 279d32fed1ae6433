"""Job specs: what a job is asked to do, validated once when it is submitted.

Specs are plain pydantic models that travel as JSON (in the job row and the Celery message).
Checks that need the file system or the model zoo live in `cnnq.jobs.validate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from cnnq.data.catalog import DataRequest


DatasetName = Literal["mnist", "cifar10", "folder", "xray"]
Precision = Literal["fp32", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["onecycle", "cosine", "step", "none"]
EngineName = Literal["auto", "eager", "onnx", "onnx-int8"]
Split = Literal["train", "val", "test"]
Threshold = Annotated[float, Field(ge=0.0, le=1.0)]
"""A decision threshold on a two-class model's score, from 0 to 1 (train and eval also take `youden`)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Device = Field(
        "auto", description="Where the job runs its model: auto picks CUDA when the worker has it."
    )
    batch_size: int = Field(64, ge=1, le=65536, description="Images per batch.")
    num_workers: int = Field(
        2, ge=0, le=64, description="DataLoader worker processes for folder and X-ray sets."
    )
    timeout: float | None = Field(
        None, gt=0, description="Stop the job and fail it (Timeout) if one attempt runs longer, in seconds."
    )


class _DataOptions(BaseModel):
    dataset: DatasetName = Field(
        description="mnist, cifar10, folder (an ImageFolder tree) or xray (chest_xray)."
    )
    data_root: Path = Field(description="Where the dataset lives (resolved to an absolute path at submit).")
    image_size: int | None = Field(
        None,
        ge=8,
        le=1024,
        description="Resize images to this square size (default: the dataset's; a folder's or X-ray set's "
        "most common size, up to 224).",
    )
    channels: int | None = Field(
        None,
        ge=1,
        le=3,
        description="1 (grayscale) or 3 (RGB) (default: the dataset's; a folder or X-ray set is read "
        "as 1 when every sampled image is grayscale).",
    )
    val_split: float = Field(
        0.1, gt=0.0, lt=1.0, description="Fraction of training data held out for validation."
    )
    limit: int | None = Field(None, ge=1, description="Use only this many training images (quick runs).")


class TrainSpec(_Spec, _DataOptions):
    kind: Literal["train"] = "train"
    model: str = Field(description="A model from `cnnq models`.")
    pretrained: bool = Field(False, description="Start from torchvision's ImageNet weights.")
    weights: Path | None = Field(None, description="A local file of pretrained weights (offline use).")
    freeze_backbone: bool = Field(False, description="Train only the classifier head.")
    epochs: int = Field(5, ge=1, le=10000)
    optimizer: Optimizer = Field("sgd", description="sgd (with momentum), adam or adamw.")
    lr: float | None = Field(
        None, gt=0.0, le=10.0, description="Peak learning rate (default: sgd 0.1, adam and adamw 0.003)."
    )
    momentum: float = Field(
        0.95, ge=0.0, lt=1.0, description="SGD momentum (onecycle cycles it from 0.85 up to this)."
    )
    weight_decay: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="L2 penalty, decoupled for adamw (default: sgd 5e-4, adam 0, adamw 0.01).",
    )
    schedule: Schedule = "onecycle"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0)
    precision: Precision = "fp32"
    channels_last: bool | None = Field(
        None,
        description="Convolutions in channels_last memory layout (default: on a CPU for inputs up to "
        "32 px, where oneDNN runs them faster; off for larger inputs and on CUDA).",
    )
    patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without a better val_accuracy."
    )
    augment: str | None = Field(
        None,
        description="Training augmentation, e.g. rotation=20,shift=0.1,flip,zoom=0.1, or `none`.",
    )
    class_weights: bool = Field(
        True, description="Weight the loss by inverse class frequency (imbalanced sets)."
    )
    threshold: Threshold | Literal["youden"] | None = Field(
        None, description="Two classes: a decision threshold, or `youden`, picked on the validation set."
    )
    target_sensitivity: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _model_recipe(cls, data: Any) -> Any:
        """Options left out take the recipe of the model on that data (`cnnq.models.recipes`), then the
        defaults here."""
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            from cnnq.models.recipes import recipe_for

            dataset = data.get("dataset")
            data = recipe_for(data["model"], dataset if isinstance(dataset, str) else None) | data
        return data

    @field_validator("channels")
    @classmethod
    def _one_or_three(cls, value: int | None) -> int | None:
        if value == 2:
            raise ValueError("--channels: give 1 (grayscale) or 3 (RGB), not 2")
        return value

    @model_validator(mode="after")
    def _check_weights(self) -> TrainSpec:
        if self.weights is not None and not self.pretrained:
            raise ValueError("--weights only makes sense with --pretrained")
        if self.threshold is not None and self.target_sensitivity is not None:
            raise ValueError("give --threshold or --target-sensitivity, not both")
        return self


class EvalSpec(_Spec):
    kind: Literal["eval"] = "eval"
    model_from: str = Field(description="The training job whose best model to evaluate.")
    model_file: Path = Field(
        validation_alias=AliasChoices("model_file", "checkpoint"),  # `checkpoint` in older stored specs
        description="That model's file (resolved from --model-from at submit).",
    )
    model_file_sha256: str | None = Field(
        None,
        validation_alias=AliasChoices("model_file_sha256", "checkpoint_sha256"),
        description="That file's sha256 at submit; the job refuses the file if it has changed since.",
    )
    dataset: DatasetName | None = Field(None, description="Default: the dataset the model was trained on.")
    data_root: Path | None = None
    image_size: int | None = Field(None, ge=8, le=1024)
    split: Split = "test"
    limit: int | None = Field(None, ge=1)
    threshold: Threshold | Literal["youden"] | None = None
    target_sensitivity: float | None = Field(None, gt=0.0, lt=1.0)


class InferSpec(_Spec):
    kind: Literal["infer"] = "infer"
    model_from: str
    model_file: Path = Field(validation_alias=AliasChoices("model_file", "checkpoint"))
    model_file_sha256: str | None = Field(
        None, validation_alias=AliasChoices("model_file_sha256", "checkpoint_sha256")
    )
    input: str = Field(description="A file, a folder (recursive), a glob, or a text file listing paths.")
    inputs: list[str] | None = Field(
        None,
        validation_alias=AliasChoices("inputs", "paths"),
        description="This shard's inputs (set by cnnq for bulk jobs).",
    )
    engine: EngineName = Field(
        "auto",
        description="eager: PyTorch; onnx: ONNX Runtime on the CPU; onnx-int8: a quantized model, "
        "every label checked to be fp32's. auto: eager on a GPU, onnx-int8 on a CPU with VNNI or AMX, "
        "else onnx.",
    )
    shard_size: int | Literal["auto"] = Field(
        "auto",
        description="Inputs per shard of a bulk job, or auto: a first shard measures the scoring speed, "
        "then the rest are cut into shards of about CNNQ_SHARD_SECONDS (30) of work, at least one per "
        "live worker.",
    )
    output: Path | None = Field(None, description="Also write the results to this CSV file.")
    resume: str | None = Field(None, description="A bulk job whose missing inputs this one scores.")
    threshold: Threshold | None = Field(None, description="Default: the model's stored threshold.")

    @field_validator("shard_size", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> Any:
        """`auto`, or a whole number of inputs from 1 to 1,000,000 (the CLI passes either as text)."""
        if value == "auto":
            return value
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 1_000_000:
            raise ValueError(f"give auto or a number of inputs per shard from 1 to 1000000, not {value!r}")
        return int(text)

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("--input is empty")
        return value


JobSpec = Annotated[TrainSpec | EvalSpec | InferSpec, Field(discriminator="kind")]


class _AnySpec(BaseModel):
    spec: JobSpec


def parse_spec(data: dict) -> TrainSpec | EvalSpec | InferSpec:
    """A spec from its JSON form (as stored in the job row; `calibration_paths`, retired, is ignored)."""
    data = {key: value for key, value in data.items() if key != "calibration_paths"}
    return _AnySpec.model_validate({"spec": data}).spec


def shard_inputs(spec: dict[str, Any]) -> list[str]:
    """A shard's inputs from its stored spec, without validating it (`paths` in older stored specs)."""
    return list(spec.get("inputs") or spec.get("paths") or ())


def data_request(spec: TrainSpec) -> DataRequest:
    """What a training job asks of its dataset: checked at submit, loaded by the job."""
    from cnnq.data.catalog import DataRequest

    return DataRequest(
        dataset=spec.dataset,
        root=spec.data_root,
        image_size=spec.image_size,
        val_split=spec.val_split,
        limit=spec.limit,
        batch_size=spec.batch_size,
        num_workers=spec.num_workers,
        augment=spec.augment,
        seed=spec.seed,
        channels=spec.channels,
        model=spec.model,
    )

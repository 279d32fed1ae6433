"""What a model file says about its model besides the weights, and reading it without torch.

`cnnq submit eval|infer` checks the model file it is given (its format, its classes, the dataset it
was trained on) through `read_model_info`, which reads only the file's pickle with cnnq's restricted
reader (`cnnq.torch_file`): no torch import, no tensor bytes read, no pickled code run. Model files
from before this reader existed are the same format and read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnq.errors import UserError
from cnnq.torch_file import UnreadableTorchFile, read_torch_file

MODEL_FORMAT = "cnnq-model/1"


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about its model, besides the weights."""

    model: str
    in_channels: int
    image_size: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str | None = None
    data_root: str | None = None
    val_split: float = 0.1
    seed: int = 0
    threshold: float | None = None
    positive_class: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "dataset": self.dataset,
            "data_root": self.data_root,
            "val_split": self.val_split,
            "seed": self.seed,
            "threshold": self.threshold,
            "positive_class": self.positive_class,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(
            model=str(data["model"]),
            in_channels=int(data["in_channels"]),
            image_size=int(data["image_size"]),
            classes=[str(c) for c in data["classes"]],
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            dataset=data.get("dataset"),
            data_root=data.get("data_root"),
            val_split=float(data.get("val_split", 0.1)),
            seed=int(data.get("seed", 0)),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
            positive_class=data.get("positive_class"),
        )


def model_info_of(state: Any, path: Path) -> ModelInfo:
    """The metadata of a model file's top-level object (loaded by torch or by `read_torch_file`)."""
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT or "state_dict" not in state:
        raise UserError(
            f"{path}: not a cnnq model file; give the `model` artifact (best.pt) of a training job"
        )
    try:
        return ModelInfo.from_dict(state["metadata"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{path}: model file metadata is incomplete ({error}); retrain it") from None


def read_model_info(path: Path) -> ModelInfo:
    """A model file's metadata, without torch. cnnq writes model files as plain containers and
    tensors only, so every one it wrote is readable here; a file this reader refuses is refused
    at submit as the job would refuse it."""
    try:
        state = read_torch_file(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give a model written by a cnnq training job") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read the model file ({error.strerror or error})") from None
    except UnreadableTorchFile as error:
        raise UserError(f"{path}: not a readable cnnq checkpoint ({error}); retrain it") from None
    return model_info_of(state, path)

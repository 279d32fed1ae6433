"""The models a job process keeps between jobs: reused while the file is unchanged, reloaded when not."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnq.jobs.checkpoint import ModelInfo, save_model_file
from cnnq.jobs.model_cache import cached_model
from cnnq.models.registry import build_model

INFO = ModelInfo("lenet", 1, 28, [str(d) for d in range(10)], (0.5,), (0.5,))


def _write(path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    save_model_file(path, build_model("lenet", in_channels=1, image_size=28, num_classes=10), INFO)


def test_an_unchanged_model_file_is_loaded_once_and_a_replaced_one_again(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    _write(path, seed=0)
    first = cached_model(path, "cpu")
    assert cached_model(path, "cpu") is first
    assert cached_model(path, "cpu", first.sha256) is first

    _write(path, seed=1)  # replaced by another training run's model
    second = cached_model(path, "cpu")
    assert second is not first and second.sha256 != first.sha256
    weights = next(iter(second.model.state_dict().values()))
    assert not torch.equal(weights, next(iter(first.model.state_dict().values())))

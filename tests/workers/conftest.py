"""What the bulk-inference tests share: a small X-ray model file and archive, and `cnnq submit infer`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cnnq.jobs.checkpoint import ModelInfo, save_model_file
from cnnq.models.registry import build_model
from tests.sample_data import make_chest_xray


@pytest.fixture
def model_and_archive(tmp_path: Path) -> tuple[Path, Path]:
    model_file = tmp_path / "models" / "simple.pt"
    network = build_model("simple-cnn", in_channels=1, image_size=32, num_classes=2)
    save_model_file(
        model_file, network, ModelInfo("simple-cnn", 1, 32, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,))
    )
    chest = make_chest_xray(tmp_path / "data", per_class={"test": (9, 9)}, size=32, corrupt=2)
    return model_file, chest


@pytest.fixture
def submit_infer(cli) -> Callable[..., str]:  # type: ignore[no-untyped-def]
    """`submit_infer("--model-from", path, "--input", folder, ...)`: the new job's id."""

    def submit(*args: object) -> str:
        result = cli("submit", "infer", *args, "--num-workers", "0", "--device", "cpu", "--json")
        assert result.code == 0, result.stderr
        return json.loads(result.stdout)["id"]

    return submit

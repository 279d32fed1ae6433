"""A job loads the bytes it hashed: one read of a model file gives both its weights and its sha256,
which names the ONNX export; a file changed since the job was submitted is refused."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
import torch

from cnnq.jobs.checkpoint import ModelFileChanged, ModelInfo, load_model_file, save_model_file
from cnnq.jobs.onnx_engine import onnx_path_for
from cnnq.models.registry import build_model

INFO = ModelInfo("simple-cnn", 1, 32, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,))


def write_model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_model_file(path, build_model("simple-cnn", in_channels=1, image_size=32, num_classes=2), INFO)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model_file(path).model.state_dict()


def test_the_onnx_export_is_named_by_the_bytes_the_model_was_loaded_from(tmp_path: Path) -> None:
    model_file = write_model(tmp_path / "models" / "best.pt", seed=0)
    first = hashlib.sha256(model_file.read_bytes()).hexdigest()
    loaded = load_model_file(model_file)
    assert loaded.sha256 == first

    write_model(model_file, seed=1)  # a writer replaces the file while the job sets up its engine
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() != first
    assert onnx_path_for(loaded, tmp_path / "work").name == f"best.{first[:16]}.onnx"


def test_a_model_file_is_read_once_for_its_weights_and_its_digest(tmp_path: Path) -> None:
    # A FIFO gives its bytes to one reader only: a second read of the "file" would wait forever.
    source = write_model(tmp_path / "source.pt", seed=0)
    fifo = tmp_path / "once.pt"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(source.read_bytes()), daemon=True)
    writer.start()
    found: dict[str, object] = {}

    def load() -> None:
        loaded = load_model_file(fifo)
        found["sha256"] = loaded.sha256
        found["onnx"] = onnx_path_for(loaded, tmp_path / "work").name
        found["weights"] = loaded.model.state_dict()

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the model file was read a second time"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert found["sha256"] == digest and found["onnx"] == f"once.{digest[:16]}.onnx"
    expected = _weights(source)
    weights = found["weights"]
    assert isinstance(weights, dict)
    assert all(torch.equal(weights[name], tensor) for name, tensor in expected.items())


def test_a_file_that_changed_since_submit_is_refused(tmp_path: Path) -> None:
    model_file = write_model(tmp_path / "best.pt", seed=0)
    submitted = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert load_model_file(model_file, expected_sha256=submitted).sha256 == submitted

    write_model(model_file, seed=1)
    with pytest.raises(ModelFileChanged) as refused:
        load_model_file(model_file, expected_sha256=submitted)
    assert str(refused.value).startswith(
        f"{model_file} has changed since this job was submitted (sha256 {submitted[:12]} then, "
    )
    assert str(refused.value).endswith("; submit the job again to use the model as it is now")

"""`read_torch_file` sees what torch.save wrote (shapes in place of tensors) and runs no pickled code."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from cnnq.errors import UserError
from cnnq.jobs.checkpoint import ModelInfo, read_model_file, save_model_file
from cnnq.jobs.model_info import read_model_info
from cnnq.torch_file import TensorShape, UnreadableTorchFile, read_torch_file


@pytest.mark.parametrize("legacy", [False, True])
def test_reads_containers_and_tensor_shapes_in_both_formats(tmp_path: Path, legacy: bool) -> None:
    state = OrderedDict(
        conv=torch.zeros(4, 1, 3, 3), steps=torch.tensor(7), half=torch.ones(2, dtype=torch.half)
    )
    view = torch.arange(12.0).reshape(3, 4)[1:]
    data = {
        "format": "x",
        "state": state,
        "view": view,
        "meta": {"classes": ["a", "b"], "t": None, "lr": 0.5},
    }
    path = tmp_path / "file.pt"
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    read = read_torch_file(path)
    assert read["format"] == "x" and read["meta"] == {"classes": ["a", "b"], "t": None, "lr": 0.5}
    assert read["state"] == {
        "conv": TensorShape((4, 1, 3, 3)),
        "steps": TensorShape(()),
        "half": TensorShape((2,)),
    }
    assert read["view"] == TensorShape((2, 4))


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused_unrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "archive/data.pkl", pickle.dumps({"format": "cnnq-model/1", "x": _Boom()}, protocol=2)
        )
    with pytest.raises(UnreadableTorchFile, match=r"(posix|os)\.system"):
        read_torch_file(path)
    legacy = tmp_path / "evil-legacy.pt"
    legacy.write_bytes(pickle.dumps(_Boom(), protocol=2))
    with pytest.raises(UnreadableTorchFile):
        read_torch_file(legacy)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04 truncated zip"])
def test_other_files_are_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file.pt"
    path.write_bytes(content)
    with pytest.raises(UnreadableTorchFile):
        read_torch_file(path)


def test_model_file_metadata_reads_the_same_without_torch(tmp_path: Path) -> None:
    info = ModelInfo(
        "lenet", 1, 28, ["0", "1"], (0.1307,), (0.3081,), dataset="mnist", data_root="/d", threshold=0.4
    )
    path = save_model_file(tmp_path / "best.pt", torch.nn.Conv2d(1, 2, 3), info)
    assert read_model_info(path) == info == read_model_file(path)[0]


def test_a_model_file_written_by_an_older_cnnq_reads_too(tmp_path: Path) -> None:
    """The format has not changed: torch.save of the model file's dict, as cnnq always wrote it."""
    metadata = ModelInfo("simple-cnn", 1, 32, ["N", "P"], (0.5,), (0.25,)).as_dict()
    buffer = io.BytesIO()
    torch.save({"format": "cnnq-model/1", "state_dict": {"w": torch.ones(2)}, "metadata": metadata}, buffer)
    path = tmp_path / "old.pt"
    path.write_bytes(buffer.getvalue())
    assert read_model_info(path).classes == ["N", "P"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"weights": torch.ones(1)}, "not a cnnq model file"),
        ({"format": "cnnq-model/1", "state_dict": {}, "metadata": {"model": "x"}}, "metadata is incomplete"),
    ],
)
def test_files_that_are_not_model_files_are_refused_as_the_job_would(
    tmp_path: Path, content: dict[str, object], problem: str
) -> None:
    path = tmp_path / "best.pt"
    torch.save(content, path)
    for read in (read_model_info, lambda p: read_model_file(p)[0]):
        with pytest.raises(UserError, match=problem):
            read(path)
    with pytest.raises(UserError, match="no such file"):
        read_model_info(tmp_path / "missing.pt")

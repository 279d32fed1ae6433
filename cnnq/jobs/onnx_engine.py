"""The ONNX Runtime engine: the model exported once, then scored by onnxruntime on the CPU.

The export is cached next to the model file, named by the file's sha256, so the shards of a bulk job
(and later jobs with the same model) export it once; where that folder is read-only it goes into the
job's workdir instead.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from cnnq.file_digest import file_sha256
from cnnq.jobs.checkpoint import LoadedModel

OPSET = 17


def onnx_path_for(loaded: LoadedModel, workdir: Path) -> Path:
    """Where the export of this model file lives: beside it if that folder is writable, else in workdir."""
    name = f"{loaded.path.stem}.{file_sha256(loaded.path)[:16]}.onnx"
    beside = loaded.path.parent / name
    if beside.is_file() or os.access(loaded.path.parent, os.W_OK):
        return beside
    return workdir / name


def export_onnx(loaded: LoadedModel, path: Path) -> Path:
    """Export the model with a softmax on top and a dynamic batch size; atomic, so racing shards are safe."""
    scorer = nn.Sequential(loaded.model, nn.Softmax(dim=1)).to("cpu").float().eval()
    example = torch.zeros(1, loaded.in_channels, loaded.image_size, loaded.image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            # torch 2.9+ prefers its torch.export-based exporter, which needs onnxscript; the
            # TorchScript exporter handles every cnnq model and needs nothing more.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                scorer,
                (example,),
                temporary,
                dynamo=False,
                input_names=["image"],
                output_names=["probabilities"],
                dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
                opset_version=OPSET,
            )
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


class OnnxEngine:
    name = "onnx"
    device = torch.device("cpu")

    def __init__(self, path: Path, threads: int) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads would take the cores from the DataLoader processes decoding the next batch.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        batch = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return self.session.run(None, {"image": batch})[0]


def onnx_engine(loaded: LoadedModel, workdir: Path, threads: int) -> OnnxEngine:
    path = onnx_path_for(loaded, workdir)
    if not path.is_file():
        return OnnxEngine(export_onnx(loaded, path), threads)
    try:
        return OnnxEngine(path, threads)
    except Exception:  # a damaged cache file: export afresh for this job
        return OnnxEngine(export_onnx(loaded, workdir / path.name), threads)

"""The ONNX Runtime engine: the model exported once, then scored by onnxruntime on the CPU.

The export is cached next to the model file, named by the file's sha256, so the shards of a bulk job
(and later jobs with the same model) make it once; where that folder is read-only it goes into the
job's workdir instead. Its int8 quantization (`quantize`, scored by `cnnq.jobs.int8_engine`) lies
beside it, made once per model: at the end of its training job (`quantize_trained`), or by the first
job that scores an older model in int8. The int8 file carries its measure in its metadata: the
largest difference of any probability from fp32's on images it was not calibrated on, and the
digest of the fp32 export it was made from.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from cnnq.atomic_file import atomic_path
from cnnq.file_digest import file_sha256
from cnnq.jobs.checkpoint import LoadedModel
from cnnq.jobs.engines import Engine
from cnnq.jobs.model_cache import FileCache

OPSET = 17
QUANTIZE_IMAGES = 128
"""Images a model is quantized on: half calibrate, the other half measure the int8 model."""


def onnx_path_for(loaded: LoadedModel, workdir: Path) -> Path:
    """Where the export of this model file lives: beside it if that folder is writable, else in workdir.

    Named by the sha256 of the bytes the model was loaded from (`LoadedModel.sha256`), not by a second
    read of the file: a file replaced in between would otherwise file this model's export under the
    new file's name, and every later job with the new file would score with the old weights.
    """
    digest = loaded.sha256 or file_sha256(loaded.path)  # "": a model built by hand (tests)
    name = f"{loaded.path.stem}.{digest[:16]}.onnx"
    beside = loaded.path.parent / name
    if beside.is_file() or os.access(loaded.path.parent, os.W_OK):
        return beside
    return workdir / name


def int8_path_for(fp32_path: Path) -> Path:
    return fp32_path.with_suffix(".int8.onnx")


def export_onnx(loaded: LoadedModel, path: Path) -> Path:
    """Export the model with a softmax on top and a dynamic batch size."""
    scorer = nn.Sequential(loaded.model, nn.Softmax(dim=1)).to("cpu").float().eval()
    example = torch.zeros(1, loaded.info.in_channels, loaded.info.image_size, loaded.info.image_size)
    with atomic_path(path) as temporary, warnings.catch_warnings():
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
    return path


def quantize_onnx(fp32_path: Path, calibration: np.ndarray, path: Path) -> Path:
    """Quantize the export statically to int8 (QDQ, per-channel int8 weights, uint8 activations),
    with activation ranges calibrated on `calibration`, a batch of the model's float input.

    ONNX Runtime's pre-processing (shape inference, constant folding) comes first: without it the
    convolutions' folded biases are not constants and the quantized model is slower than fp32.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration, max(1, len(calibration) // 16)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"image": np.ascontiguousarray(batch, dtype=np.float32)}

    quiet = logging.getLogger()  # onnxruntime.quantization logs its progress on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="cnnq-quantize-") as scratch:
            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            with atomic_path(path) as temporary:
                quantize_static(
                    str(prepared),
                    temporary,
                    Batches(),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    # Without VNNI, ONNX Runtime multiplies uint8 by int8 with 16-bit sums that saturate
                    # (measured: int8 off fp32 by 0.058 on an AVX2-only EPYC); 7-bit weights cannot, so
                    # a file quantized on one CPU scores as measured on any other.
                    reduce_range=True,
                )
    finally:
        quiet.setLevel(level)
    return path


class OnnxEngine(Engine):
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
        model = path.read_bytes()  # one read for the session and its digest: a racing shard may
        self.sha256 = hashlib.sha256(model).hexdigest()  # replace the file meanwhile
        self.session = onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        return self.run(as_input(images))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": batch})[0]


def as_input(images: torch.Tensor) -> np.ndarray:
    return images.detach().to("cpu", torch.float32).contiguous().numpy()


SESSIONS: FileCache[OnnxEngine] = FileCache()
"""The ONNX files a job process loaded last (see `cnnq.jobs.model_cache`)."""


def load_onnx(path: Path, threads: int) -> OnnxEngine:
    """An engine on the ONNX file at `path`, loaded once per unchanged file in this process."""
    return SESSIONS.get(path, (threads,), lambda: OnnxEngine(path, threads))


def _run(engine: OnnxEngine, batch: np.ndarray) -> np.ndarray:
    return np.concatenate([engine.run(batch[i : i + 32]) for i in range(0, len(batch), 32)])


def quantize(fp32: OnnxEngine, calibration: np.ndarray, check: np.ndarray, threads: int) -> str:
    """Write the int8 file, calibrated on `calibration` and measured on `check`; a line for the log."""
    import onnx

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnq-int8-") as scratch:
        draft = quantize_onnx(fp32.path, calibration, Path(scratch) / "int8.onnx")
        difference = np.abs(_run(OnnxEngine(draft, threads), check) - _run(fp32, check)).max()
        model = onnx.load(draft)
        measure = {"fp32_sha256": fp32.sha256, "max_difference": str(difference), "checked": str(len(check))}
        onnx.helper.set_model_props(model, measure)
        with atomic_path(int8_path_for(fp32.path)) as temporary:  # of racing jobs, one whole file wins
            onnx.save(model, temporary)
    return f"int8: quantized in {time.perf_counter() - began:.1f} s on {len(calibration)} images"


def quantize_trained(
    model_file: Path, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], threads: int
) -> str:
    """Export and quantize a freshly trained model on up to `QUANTIZE_IMAGES` of `batches` (its
    validation, then its training images), as many of each class as there are."""
    from cnnq.jobs.checkpoint import load_model_file

    loaded = load_model_file(model_file)
    quota = max(2, QUANTIZE_IMAGES // len(loaded.info.classes))
    taken: list[list[np.ndarray]] = [[] for _ in loaded.info.classes]
    for images, labels in batches:
        for image, label in zip(as_input(images), labels.tolist(), strict=True):
            if len(taken[label]) < quota:
                taken[label].append(image)
        if all(len(group) == quota for group in taken):
            break
    calibration, check = ([image for group in taken for image in group[half::2]] for half in (0, 1))
    fp32 = onnx_engine(loaded, model_file.parent, threads)
    return quantize(fp32, np.stack(calibration), np.stack(check), threads)


def onnx_engine(loaded: LoadedModel, workdir: Path, threads: int) -> OnnxEngine:
    path = onnx_path_for(loaded, workdir)
    if not path.is_file():
        return load_onnx(export_onnx(loaded, path), threads)
    try:
        return load_onnx(path, threads)
    except Exception:  # a damaged cache file: export afresh for this job
        return OnnxEngine(export_onnx(loaded, workdir / path.name), threads)

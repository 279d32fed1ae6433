"""The int8 engine on a trained X-ray model and real image files: every label is fp32's."""

from __future__ import annotations

import itertools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cnnq.jobs import int8_engine
from cnnq.jobs.checkpoint import ModelInfo, load_model_file, save_model_file
from cnnq.jobs.engines import resolve_engine
from cnnq.jobs.infer import Decision, infer_job
from cnnq.jobs.inputs import spread_sample
from cnnq.jobs.onnx_engine import (
    QUANTIZE_IMAGES,
    OnnxEngine,
    int8_path_for,
    onnx_engine,
    onnx_path_for,
    quantize,
)
from cnnq.jobs.reporter import PredictionRow, RecordingReporter
from cnnq.jobs.spec import InferSpec, parse_spec
from cnnq.models.registry import build_model
from tests.sample_data import make_chest_xray, train_confident_xray_model

IMAGES = 400  # enough to quantize on, and then most of the job in int8


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xray")
    half = IMAGES // 2
    per_class = {"train": (24, 48), "val": (8, 8), "test": (half, half)}
    return make_chest_xray(root, per_class=per_class, size=40, corrupt=0)


@pytest.fixture(scope="module")
def trained(chest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_confident_xray_model(chest, tmp_path_factory.mktemp("train"))


@pytest.fixture
def model_file(trained: Path, tmp_path: Path) -> Path:
    """The trained model in a folder of its own, so that each test starts without cached exports."""
    copy = tmp_path / "model" / trained.name
    copy.parent.mkdir()
    shutil.copyfile(trained, copy)
    return copy


def _cached_int8(model_file: Path) -> Path:
    return int8_path_for(onnx_path_for(load_model_file(model_file), model_file.parent))


def _measure(int8_file: Path) -> dict[str, str]:
    return {prop.key: prop.value for prop in onnx.load(int8_file).metadata_props}


def _restamp(int8_file: Path, **measure: str) -> None:
    """Rewrite the measure the int8 file carries (a new file, as a job that quantizes writes it)."""
    model = onnx.load(int8_file)
    onnx.helper.set_model_props(model, _measure(int8_file) | measure)
    onnx.save(model, int8_file.with_suffix(".tmp"))
    os.replace(int8_file.with_suffix(".tmp"), int8_file)


def _score(model_file: Path, chest: Path, workdir: Path, engine: str, **options: object) -> RecordingReporter:
    spec = InferSpec(
        model_from="train-test",
        model_file=model_file,
        input=str(chest / "test"),
        engine=engine,  # type: ignore[arg-type]
        num_workers=0,
        **options,
    )
    reporter = RecordingReporter()
    infer_job(spec, workdir, reporter)
    return reporter


def _assert_same_labels(rows: dict[str, PredictionRow], exact: dict[str, PredictionRow]) -> None:
    assert rows.keys() == exact.keys() and len(rows) == IMAGES
    for path, row in exact.items():
        assert rows[path].label == row.label, (path, rows[path].score, row.score)


def test_int8_gives_every_label_fp32_gives(model_file: Path, chest: Path, tmp_path: Path) -> None:
    eager = _score(model_file, chest, tmp_path / "eager", "eager")
    int8 = _score(model_file, chest, tmp_path / "int8", "onnx-int8")

    _assert_same_labels(int8.rows, eager.rows)
    report = int8.summary["engine_report"]
    assert int8.summary["engine"] == "onnx-int8" and not report["fell_back_to_fp32"]
    assert report["int8_scored"] > IMAGES // 3, (report, int8.lines)
    assert report["int8_scored"] + report["fp32_scored"] == IMAGES
    assert 0 < report["max_difference"] <= int8_engine.MAX_ERROR
    margin = max(int8_engine.SAFETY * report["max_difference"], int8_engine.MIN_MARGIN)
    assert report["margin"] == pytest.approx(margin, abs=1e-5)
    differences = [abs(int8.rows[p].score - row.score) for p, row in eager.rows.items()]
    assert max(differences) <= report["margin"]
    assert any(d > 1e-4 for d in differences)  # some scores really came from the int8 model
    assert any("int8: quantized" in line for line in int8.lines)  # an older model: on its first job's inputs
    assert _measure(_cached_int8(model_file))["checked"] == str(QUANTIZE_IMAGES // 2)


def test_images_near_the_threshold_are_scored_again_in_fp32(
    model_file: Path, chest: Path, tmp_path: Path
) -> None:
    eager = _score(model_file, chest, tmp_path / "eager", "eager")
    scores = sorted(row.score for row in eager.rows.values())
    # Half the images on each side, the middle one just below it: close, but not on it exactly,
    # where eager's and ONNX Runtime's last-bit differences would decide.
    threshold = scores[len(scores) // 2] + 1e-4
    int8 = _score(model_file, chest, tmp_path / "int8", "onnx-int8", threshold=threshold)
    exact = _score(model_file, chest, tmp_path / "eager-t", "eager", threshold=threshold)

    _assert_same_labels(int8.rows, exact.rows)
    report = int8.summary["engine_report"]
    assert report["near_boundary_rescored"] > 0
    near = [p for p, row in exact.rows.items() if abs(row.score - threshold) <= report["margin"]]
    assert near
    for path in near:  # scored in fp32: the exact score, not the int8 one
        assert int8.rows[path].score == pytest.approx(exact.rows[path].score, abs=1e-5)


def test_a_model_unsure_of_most_images_goes_back_to_fp32(chest: Path, tmp_path: Path) -> None:
    """An untrained model scores every image near 0.5: int8 would score most twice, so the job stops."""
    torch.manual_seed(0)
    network = build_model("simple-cnn", in_channels=1, image_size=32, num_classes=2)
    info = ModelInfo(
        "simple-cnn", 1, 32, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,), positive_class="PNEUMONIA"
    )
    untrained = save_model_file(tmp_path / "model" / "untrained.pt", network, info)

    eager = _score(untrained, chest, tmp_path / "eager", "eager")
    int8 = _score(untrained, chest, tmp_path / "int8", "onnx-int8", batch_size=8)

    report = int8.summary["engine_report"]
    near = [abs(row.score - 0.5) <= report["margin"] for row in eager.rows.values()]
    assert sum(near) > int8_engine.MAX_RESCORED * IMAGES  # the premise: most images are uncertain
    assert report["fell_back_to_fp32"]
    assert any("of the images are near the boundary; scoring in fp32" in line for line in int8.lines)
    assert report["int8_scored"] + report["near_boundary_rescored"] < IMAGES // 2
    _assert_same_labels(int8.rows, eager.rows)


def test_training_quantizes_the_model_on_its_own_images(trained: Path, chest: Path, tmp_path: Path) -> None:
    """The training job left an int8 file with its measure beside the model: no job quantizes again."""
    measure = _measure(_cached_int8(trained))
    # Up to QUANTIZE_IMAGES / 2 of each class from val and train (NORMAL 8 + 24, PNEUMONIA 8 + 48),
    # every other one measured: 16 + 28.
    assert measure["checked"] == "44" and 0 < float(measure["max_difference"]) <= int8_engine.MAX_ERROR

    eager = _score(trained, chest, tmp_path / "eager", "eager")
    int8 = _score(trained, chest, tmp_path / "int8", "onnx-int8")

    _assert_same_labels(int8.rows, eager.rows)
    report = int8.summary["engine_report"]
    assert not any("int8: quantized" in line for line in int8.lines)
    assert report["max_difference"] == pytest.approx(float(measure["max_difference"]), abs=1e-6)
    assert report["int8_scored"] > IMAGES // 3 and not report["fell_back_to_fp32"]


def test_later_jobs_reuse_the_int8_model_and_its_measure(
    model_file: Path, chest: Path, tmp_path: Path
) -> None:
    first = _score(model_file, chest, tmp_path / "first", "onnx-int8")
    cached = _cached_int8(model_file)
    written = cached.stat().st_mtime_ns

    second = _score(model_file, chest, tmp_path / "second", "onnx-int8")

    assert cached.stat().st_mtime_ns == written
    assert not any("int8: quantized" in line for line in second.lines)
    report = second.summary["engine_report"]
    assert report["max_difference"] == first.summary["engine_report"]["max_difference"]
    assert report["fp32_scored"] == report["near_boundary_rescored"]  # no sample in fp32: only rescoring
    assert report["int8_scored"] > IMAGES // 3


def test_a_large_measure_widens_the_margin(model_file: Path, chest: Path, tmp_path: Path) -> None:
    _score(model_file, chest, tmp_path / "first", "onnx-int8")
    _restamp(_cached_int8(model_file), max_difference="0.03")

    widened = _score(model_file, chest, tmp_path / "widened", "onnx-int8")

    report = widened.summary["engine_report"]
    assert report["max_difference"] == pytest.approx(0.03)
    assert report["margin"] == pytest.approx(int8_engine.SAFETY * 0.03)
    assert report["int8_scored"] > 0


def test_an_int8_file_of_another_model_is_quantized_again(
    model_file: Path, chest: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A quantized model of another network in the cache: its measure is of another export, so the job
    quantizes this model afresh, and every label is fp32's."""
    other = train_confident_xray_model(chest, tmp_path_factory.mktemp("other"), seed=7)
    mine = _cached_int8(model_file)
    _score(model_file, chest, tmp_path / "mine", "onnx")  # makes the fp32 export
    shutil.copyfile(_cached_int8(other), mine)

    eager = _score(model_file, chest, tmp_path / "eager", "eager")
    int8 = _score(model_file, chest, tmp_path / "int8", "onnx-int8")

    assert any("holds no measure against this fp32 export; quantizing again" in line for line in int8.lines)
    assert _measure(mine)["fp32_sha256"] != _measure(_cached_int8(other))["fp32_sha256"]
    assert int8.summary["engine_report"]["int8_scored"] > IMAGES // 3
    _assert_same_labels(int8.rows, eager.rows)


def test_an_int8_model_measured_too_far_from_fp32_is_not_used(
    model_file: Path, chest: Path, tmp_path: Path
) -> None:
    _score(model_file, chest, tmp_path / "first", "onnx-int8")
    _restamp(_cached_int8(model_file), max_difference="0.2")

    eager = _score(model_file, chest, tmp_path / "eager", "eager")
    int8 = _score(model_file, chest, tmp_path / "int8", "onnx-int8")

    report = int8.summary["engine_report"]
    assert report["fell_back_to_fp32"] and report["int8_scored"] == 0
    assert report["max_difference"] > int8_engine.MAX_ERROR
    assert any("over 0.05; scoring in fp32" in line for line in int8.lines)
    for path, row in eager.rows.items():
        assert int8.rows[path].label == row.label
        assert int8.rows[path].score == pytest.approx(row.score, abs=1e-4)


def test_a_damaged_int8_cache_is_quantized_again(model_file: Path, chest: Path, tmp_path: Path) -> None:
    _score(model_file, chest, tmp_path / "onnx", "onnx")
    cached = _cached_int8(model_file)
    cached.write_bytes(b"not an onnx file")

    int8 = _score(model_file, chest, tmp_path / "int8", "onnx-int8")

    assert any("quantizing again" in line for line in int8.lines)
    assert int8.summary["engine_report"]["int8_scored"] > 0
    assert cached.stat().st_size > 1000


def test_a_job_too_small_for_int8_is_scored_in_fp32(model_file: Path, chest: Path, tmp_path: Path) -> None:
    spec = InferSpec(
        model_from="train-test",
        model_file=model_file,
        input=str(chest / "test" / "NORMAL" / "normal_00*.png"),
        engine="onnx-int8",
        num_workers=0,
    )
    reporter = RecordingReporter()
    infer_job(spec, tmp_path, reporter)
    summary = reporter.summary
    report = summary["engine_report"]
    assert summary["scored"] == 50 < QUANTIZE_IMAGES
    assert any("too few" in line for line in reporter.lines)
    assert report["int8_scored"] == 0 and report["fp32_scored"] == summary["scored"]


def test_near_boundary_for_two_classes_and_for_more() -> None:
    probabilities = np.array([[0.70, 0.30], [0.42, 0.58], [0.50, 0.50], [0.05, 0.95]])
    with_threshold = Decision(["NORMAL", "PNEUMONIA"], positive_index=1, threshold=0.6)
    assert with_threshold.near_boundary(probabilities, 0.05).tolist() == [False, True, False, False]
    argmax = Decision(["NORMAL", "PNEUMONIA"], positive_index=1, threshold=None)
    assert argmax.near_boundary(probabilities, 0.1).tolist() == [False, True, True, False]
    three = Decision(["a", "b", "c"], positive_index=None, threshold=None)
    many = np.array([[0.5, 0.3, 0.2], [0.36, 0.34, 0.30], [0.1, 0.1, 0.8]])
    assert three.near_boundary(many, 0.05).tolist() == [False, True, False]


def test_auto_picks_int8_only_where_the_cpu_has_int8_dot_products() -> None:
    from cnnq.jobs.device import cpu_has_int8_dot

    cpu = resolve_engine("auto", torch.device("cpu"))
    assert cpu == ("onnx-int8" if cpu_has_int8_dot() else "onnx")
    assert resolve_engine("auto", torch.device("cuda")) == "eager"
    assert resolve_engine("onnx", torch.device("cpu")) == "onnx"
    flags = Path("/proc/cpuinfo").read_text()
    assert cpu_has_int8_dot() == any(f in flags.split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def test_a_spread_sample_covers_the_whole_list_once() -> None:
    inputs = [f"/archive/{i:04d}.png" for i in range(1000)]
    sample = spread_sample(inputs, 64)
    assert len(sample) == len(set(sample)) == 64
    assert sample[0] == inputs[0] and sample[-1] == inputs[-1] and sample == sorted(sample)
    gaps = {inputs.index(b) - inputs.index(a) for a, b in itertools.pairwise(sample)}
    assert gaps <= {15, 16, 17}
    assert spread_sample(inputs[:10], 64) == inputs[:10]
    assert spread_sample([], 64) == [] and spread_sample(inputs, 0) == []


def test_two_jobs_quantizing_at_once_leave_one_whole_int8_file(model_file: Path, tmp_path: Path) -> None:
    fp32 = onnx_engine(load_model_file(model_file), tmp_path, 1)
    samples = np.random.default_rng(0).normal(size=(2, 64, 1, 32, 32)).astype(np.float32)

    with ThreadPoolExecutor(2) as pool:
        lines = list(pool.map(lambda images: quantize(fp32, images[0::2], images[1::2], 1), samples))

    assert all(line.startswith("int8: quantized") for line in lines)
    int8 = _cached_int8(model_file)
    assert _measure(int8)["fp32_sha256"] == fp32.sha256
    assert OnnxEngine(int8, 1).run(samples[0, :4]).shape == (4, 2)
    assert sorted(path.name for path in int8.parent.iterdir()) == sorted(
        [model_file.name, fp32.path.name, int8.name]
    )


def test_a_stored_spec_with_calibration_paths_still_loads() -> None:
    """Shards submitted before int8 models were quantized once per model carry `calibration_paths`."""
    spec = InferSpec(model_from="m", model_file=Path("/models/m.pt"), input="/archive")
    stored = spec.model_dump(mode="json") | {"calibration_paths": ["/archive/a.png"]}
    assert parse_spec(stored) == spec

"""The int8 engine on a trained X-ray model and real image files: every label is fp32's."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnq.file_digest import file_sha256
from cnnq.jobs import int8_engine
from cnnq.jobs.checkpoint import ModelInfo, load_model_file, save_model_file
from cnnq.jobs.engines import resolve_engine
from cnnq.jobs.infer import Decision, infer_job
from cnnq.jobs.inputs import spread_sample
from cnnq.jobs.onnx_engine import int8_path_for, onnx_path_for
from cnnq.jobs.reporter import PredictionRow, RecordingReporter
from cnnq.jobs.spec import InferSpec
from cnnq.models.registry import build_model
from tests.sample_data import make_chest_xray, train_confident_xray_model

IMAGES = 400  # enough to pay for the sample, and then most of the job in int8


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


def _score(model_file: Path, chest: Path, workdir: Path, engine: str, **options: object) -> RecordingReporter:
    spec = InferSpec(
        model_from="train-test",
        checkpoint=model_file,
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
    assert any("int8: quantized" in line for line in int8.lines)
    assert _cached_int8(model_file).is_file()


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
    assert any("near the decision boundary and need fp32" in line for line in int8.lines)
    assert report["int8_scored"] + report["near_boundary_rescored"] < IMAGES // 2
    _assert_same_labels(int8.rows, eager.rows)


def test_later_jobs_reuse_the_int8_model_and_spot_check_it(
    model_file: Path, chest: Path, tmp_path: Path
) -> None:
    _score(model_file, chest, tmp_path / "first", "onnx-int8")
    cached = _cached_int8(model_file)
    written = cached.stat().st_mtime_ns
    first = int8_engine.read_record(cached, file_sha256(cached))
    assert first.images == int8_engine.SAMPLE_IMAGES and first.max_difference > 0

    second = _score(model_file, chest, tmp_path / "second", "onnx-int8")
    third = _score(model_file, chest, tmp_path / "third", "onnx-int8")

    assert cached.stat().st_mtime_ns == written
    assert not any("int8: quantized" in line for line in second.lines + third.lines)
    for job in (second, third):
        report = job.summary["engine_report"]
        assert report["checked_here"] == int8_engine.SPOT_IMAGES
        assert report["fp32_scored"] - report["near_boundary_rescored"] == int8_engine.SPOT_IMAGES
        assert report["max_difference"] >= round(first.max_difference, 6)  # the record's largest counts
    record = int8_engine.read_record(cached, file_sha256(cached))
    assert record.images == int8_engine.SAMPLE_IMAGES + 2 * int8_engine.SPOT_IMAGES
    assert third.summary["engine_report"]["checked_in_all"] == record.images
    assert any(
        f"and {int8_engine.SAMPLE_IMAGES + int8_engine.SPOT_IMAGES} in earlier checks" in line
        for line in third.lines
    )


def test_a_large_difference_on_record_widens_the_margin(
    model_file: Path, chest: Path, tmp_path: Path
) -> None:
    _score(model_file, chest, tmp_path / "first", "onnx-int8")
    cached = _cached_int8(model_file)
    int8_engine.add_to_record(cached, file_sha256(cached), 1, 0.03)  # one odd image, seen by an earlier job

    widened = _score(model_file, chest, tmp_path / "widened", "onnx-int8")

    report = widened.summary["engine_report"]
    assert report["max_difference"] == pytest.approx(0.03)
    assert report["margin"] == pytest.approx(int8_engine.SAFETY * 0.03)
    assert report["int8_scored"] > 0


def test_a_record_of_another_int8_file_is_ignored(model_file: Path, chest: Path, tmp_path: Path) -> None:
    _score(model_file, chest, tmp_path / "first", "onnx-int8")
    cached = _cached_int8(model_file)
    int8_engine.add_to_record(cached, "0" * 64, 10_000, 0.001)  # not this file's sha256

    again = _score(model_file, chest, tmp_path / "again", "onnx-int8")

    assert again.summary["engine_report"]["checked_here"] == int8_engine.SAMPLE_IMAGES
    assert int8_engine.read_record(cached, file_sha256(cached)).images == int8_engine.SAMPLE_IMAGES


def test_an_int8_model_that_disagrees_with_fp32_is_not_used(
    model_file: Path, chest: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A quantized model of another network in the cache: the check catches it, the job scores in fp32."""
    other = train_confident_xray_model(chest, tmp_path_factory.mktemp("other"), seed=7)
    _score(other, chest, tmp_path / "other", "onnx-int8")
    mine = _cached_int8(model_file)
    _score(model_file, chest, tmp_path / "mine", "onnx")  # makes the fp32 export
    shutil.copyfile(_cached_int8(other), mine)

    eager = _score(model_file, chest, tmp_path / "eager", "eager")
    int8 = _score(model_file, chest, tmp_path / "int8", "onnx-int8")

    report = int8.summary["engine_report"]
    assert report["fell_back_to_fp32"] and report["int8_scored"] == 0
    assert report["max_difference"] > int8_engine.MAX_ERROR
    assert any("scoring in fp32" in line for line in int8.lines)
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


def test_a_job_too_small_to_check_is_scored_in_fp32(model_file: Path, chest: Path, tmp_path: Path) -> None:
    spec = InferSpec(
        model_from="train-test",
        checkpoint=model_file,
        input=str(chest / "test" / "NORMAL" / "*.png"),
        engine="onnx-int8",
        num_workers=0,
    )
    reporter = RecordingReporter()
    summary = infer_job(spec, tmp_path, reporter)
    report = summary["engine_report"]
    assert summary["scored"] < int8_engine.SAMPLE_PAYS * 2 * int8_engine.SAMPLE_IMAGES
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

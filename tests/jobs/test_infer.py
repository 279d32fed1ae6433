"""The infer job on real files: a trained X-ray model, real PNG/JPEG/DICOM inputs and broken ones."""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnq.errors import UserError
from cnnq.jobs.checkpoint import LoadedModel, ModelInfo, load_model_file
from cnnq.jobs.engines import resolve_engine
from cnnq.jobs.infer import Decision, infer_job
from cnnq.jobs.inputs import list_inputs
from cnnq.jobs.reporter import JobCancelled, PredictionRow, RecordingReporter
from cnnq.jobs.spec import InferSpec, TrainSpec
from cnnq.jobs.train import train_job
from tests.sample_data import make_chest_xray, xray_image
from tests.sample_dicom import write_dicom
from tests.sample_poison import write_huge_png, write_lying_dicom

BROKEN = {
    "broken/empty.png": "empty file",
    "broken/notes.txt": "not an image: text file",
    "broken/half.jpeg": "truncated image",
    "broken/fake.dcm": "not an image: not a DICOM file",
}


@pytest.fixture(scope="module")
def xray_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xray")
    make_chest_xray(root, per_class={"train": (24, 48), "val": (4, 4), "test": (8, 8)}, size=48, corrupt=0)
    return root


@pytest.fixture(scope="module")
def model_file(xray_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simple CNN trained for two epochs: it tells the generated classes apart."""
    spec = TrainSpec(
        dataset="xray",
        data_root=xray_root,
        model="simple-cnn",
        image_size=32,
        epochs=2,
        batch_size=16,
        num_workers=0,
        threshold="youden",
    )
    reporter = RecordingReporter()
    train_job(spec, tmp_path_factory.mktemp("train"), reporter)
    return reporter.artifacts["model"]


@pytest.fixture(scope="module")
def archive(xray_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test split plus DICOM copies of two images and one broken file of each kind, nested."""
    folder = tmp_path_factory.mktemp("archive")
    shutil.copytree(xray_root / "chest_xray" / "test", folder / "test")
    rng = np.random.default_rng(5)
    for name, pneumonia in (("normal", False), ("pneumonia", True)):
        pixels = np.asarray(xray_image(pneumonia, 48, rng)).astype(np.uint16) * 16  # 12-bit
        pixels[0, 0], pixels[-1, -1] = 0, 255 * 16  # the decoder stretches the range it finds
        write_dicom(folder / "dicom" / f"{name}.dcm", pixels)
    (folder / "broken").mkdir()
    (folder / "broken" / "empty.png").write_bytes(b"")
    (folder / "broken" / "notes.txt").write_text("ward round notes\n")
    whole = (folder / "test" / "PNEUMONIA" / "pneumonia_0000.jpeg").read_bytes()
    (folder / "broken" / "half.jpeg").write_bytes(whole[: len(whole) // 3])
    (folder / "broken" / "fake.dcm").write_text("not dicom")
    return folder


def _spec(model_file: Path, input: str, **options: object) -> InferSpec:
    return InferSpec(model_from="train-test", model_file=model_file, input=input, **options)


def _truth(path: str) -> str | None:
    for name in ("NORMAL", "PNEUMONIA"):
        if f"/{name}/" in path or Path(path).stem == name.lower():
            return name
    return None


def test_a_folder_gives_one_row_per_file_with_broken_files_flagged(
    model_file: Path, archive: Path, tmp_path: Path
) -> None:
    files = sorted(str(p) for p in archive.rglob("*") if p.is_file())
    reporter = RecordingReporter()
    infer_job(_spec(model_file, str(archive), batch_size=8, num_workers=2), tmp_path, reporter)
    summary = reporter.summary

    assert sorted(reporter.rows) == files
    for relative, reason in BROKEN.items():
        row = reporter.rows[str(archive / relative)]
        assert row.error == reason and row.label is None and row.score is None
    scored = [row for row in reporter.rows.values() if row.error is None]
    assert len(scored) == len(files) - len(BROKEN)
    correct = [row.label == _truth(row.input) for row in scored]
    assert np.mean(correct) >= 0.8, [(r.input, r.label, r.score) for r in scored]
    for row in scored:
        assert row.probabilities is not None and set(row.probabilities) == {"NORMAL", "PNEUMONIA"}
        assert row.score == pytest.approx(row.probabilities["PNEUMONIA"])
        assert row.label == ("PNEUMONIA" if row.score >= summary["threshold"] else "NORMAL")

    stored = load_model_file(model_file).info.threshold
    assert stored is not None and summary["threshold"] == pytest.approx(stored)
    assert summary["inputs"] == len(files)
    assert summary["scored"] == len(scored) and summary["flagged"] == len(BROKEN)
    assert summary["positive"] == sum(row.label == "PNEUMONIA" for row in scored)
    assert summary["errors"] == {error: 1 for error in BROKEN.values()}
    assert summary["engine"] == resolve_engine("auto", torch.device("cpu"))
    assert reporter.summary == summary
    assert reporter.progress_updates[-1][0] == pytest.approx(1.0)


def test_poison_inputs_are_flagged_rows_and_every_other_input_is_scored(
    model_file: Path, xray_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "poison"
    shutil.copytree(xray_root / "chest_xray" / "test" / "NORMAL", folder / "NORMAL")
    huge = write_huge_png(folder / "huge.png", 13000, 13000)  # 16-bit: 1.35 GB as float64
    lying = write_lying_dicom(folder / "lying.dcm", 65535, 65535)  # 8 GB of pixels declared
    reporter = RecordingReporter()
    infer_job(_spec(model_file, str(folder), batch_size=4, num_workers=2), tmp_path / "w", reporter)
    summary = reporter.summary

    assert reporter.rows[str(huge)].error == "too large: 13000x13000"
    assert reporter.rows[str(lying)].error == "too large: 65535x65535"
    normal = [row for path, row in reporter.rows.items() if "/NORMAL/" in path]
    assert len(normal) == 8 and all(row.error is None and row.label is not None for row in normal)
    assert (summary["scored"], summary["flagged"]) == (8, 2)


def test_a_glob_and_a_list_file(model_file: Path, archive: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    infer_job(_spec(model_file, str(archive / "**" / "*.png"), num_workers=0), tmp_path / "glob", reporter)
    assert sorted(reporter.rows) == sorted(str(p) for p in archive.rglob("*.png"))

    # Relative lines are relative to the list file; duplicates and comments are dropped.
    listing = archive.parent / "lists" / "inputs.txt"
    listing.parent.mkdir(exist_ok=True)
    listing.write_text(
        f"# inputs\n{archive / 'dicom' / 'pneumonia.dcm'}\n../{archive.name}/dicom/normal.dcm\n\n"
        f"{archive / 'gone.png'}\n{archive / 'dicom' / 'pneumonia.dcm'}\n"
    )
    reporter = RecordingReporter()
    infer_job(_spec(model_file, str(listing), num_workers=0), tmp_path / "list", reporter)
    assert list(reporter.rows) == [
        str(archive / "dicom" / "pneumonia.dcm"),
        str(archive / "dicom" / "normal.dcm"),
        str(archive / "gone.png"),
    ]
    assert reporter.rows[str(archive / "gone.png")].error == "file not found"
    assert reporter.rows[str(archive / "dicom" / "pneumonia.dcm")].label == "PNEUMONIA"
    assert reporter.rows[str(archive / "dicom" / "normal.dcm")].label == "NORMAL"


def test_inputs_that_already_have_a_row_are_not_scored_again(
    model_file: Path, archive: Path, tmp_path: Path
) -> None:
    inputs = list_inputs(str(archive))
    reporter = RecordingReporter()
    earlier = inputs[::3]
    reporter.predictions([PredictionRow(input=path, label="EARLIER") for path in earlier])

    infer_job(_spec(model_file, str(archive), num_workers=0), tmp_path, reporter)
    summary = reporter.summary

    assert sorted(reporter.rows) == sorted(inputs)
    assert all(reporter.rows[path].label == "EARLIER" for path in earlier)
    assert not any(row.label == "EARLIER" for path, row in reporter.rows.items() if path not in earlier)
    assert summary["already_done"] == len(earlier)
    assert summary["scored"] + summary["flagged"] == len(inputs) - len(earlier)
    assert reporter.progress_updates[0][0] == pytest.approx(len(earlier) / len(inputs))

    infer_job(_spec(model_file, str(archive), num_workers=0), tmp_path, reporter)
    again = reporter.summary
    assert again["already_done"] == len(inputs) and again["scored"] == again["flagged"] == 0


def test_a_shard_scores_only_its_paths(model_file: Path, archive: Path, tmp_path: Path) -> None:
    inputs = list_inputs(str(archive))
    reporter = RecordingReporter()
    infer_job(_spec(model_file, str(archive), inputs=inputs[2:7], num_workers=0), tmp_path, reporter)
    assert list(reporter.rows) == inputs[2:7]
    assert reporter.summary["inputs"] == 5


def test_eager_and_onnx_agree_on_every_label(model_file: Path, archive: Path, tmp_path: Path) -> None:
    results = {}
    for engine in ("eager", "onnx"):
        reporter = RecordingReporter()
        infer_job(_spec(model_file, str(archive), engine=engine), tmp_path / engine, reporter)
        summary = reporter.summary
        assert summary["engine"] == engine
        results[engine] = reporter.rows
    assert results["eager"].keys() == results["onnx"].keys()
    for path, eager in results["eager"].items():
        onnx = results["onnx"][path]
        assert (eager.label, eager.error) == (onnx.label, onnx.error), path
        if eager.score is not None:
            assert eager.score == pytest.approx(onnx.score, abs=1e-4)
    # The export is cached beside the model file, keyed by its content (with the int8 model that
    # training quantized).
    exports = {path.name for path in model_file.parent.glob(f"{model_file.stem}.*.onnx")}
    fp32 = min(exports, key=len)
    assert exports == {fp32, fp32.replace(".onnx", ".int8.onnx")}


def test_threshold_option_overrides_the_stored_one(model_file: Path, archive: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    infer_job(_spec(model_file, str(archive / "test"), threshold=0.0), tmp_path, reporter)
    summary = reporter.summary
    assert summary["threshold"] == 0.0
    assert {row.label for row in reporter.rows.values()} == {"PNEUMONIA"}


@dataclass
class _StopsAfter(RecordingReporter):
    """A delivery that dies (here: is cancelled) after a number of batches."""

    batches: int = 0

    def check_stop(self) -> None:
        self.batches -= 1
        if self.batches < 0:
            raise JobCancelled("the worker died")


def test_csv_output_has_every_input_once_even_after_a_second_delivery(
    model_file: Path, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnq.jobs.infer

    monkeypatch.setattr(cnnq.jobs.infer, "WRITE_SECONDS", 0.0)  # every batch's rows reach the reporter
    out = tmp_path / "out" / "predictions.csv"
    inputs = list_inputs(str(archive))
    workdir = tmp_path / "work"
    spec = _spec(model_file, str(archive), output=out, num_workers=0, batch_size=4)
    first = _StopsAfter(batches=2)
    with pytest.raises(JobCancelled):
        infer_job(spec, workdir, first)
    assert 0 < len(first.rows) < len(inputs)
    # Delivered again, reporting what the first delivery wrote as done: the export lists every input.
    second = RecordingReporter(rows=dict(first.rows))
    infer_job(spec, workdir, second)
    summary = second.summary
    assert summary["already_done"] == len(first.rows)

    with out.open(newline="") as file:
        records = list(csv.DictReader(file))
    assert [r["input"] for r in records] == inputs
    assert list(records[0]) == ["input", "label", "score", "error", "p_NORMAL", "p_PNEUMONIA"]
    flagged = {r["input"]: r["error"] for r in records if r["error"]}
    assert flagged == {str(archive / k): v for k, v in BROKEN.items()}
    assert second.artifacts["predictions"] == out and summary["output"] == str(out)


def test_cancel_is_honoured_between_batches(model_file: Path, archive: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter(cancel_after=0.0)
    with pytest.raises(JobCancelled):
        infer_job(_spec(model_file, str(archive), batch_size=4, num_workers=0), tmp_path, reporter)
    assert len(reporter.rows) < len(list_inputs(str(archive)))


def test_listing_refuses_what_names_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file or folder"):
        list_inputs(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="matches no files"):
        list_inputs(str(tmp_path / "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no files"):
        list_inputs(str(tmp_path / "empty"))
    Image.new("L", (4, 4)).save(tmp_path / "one.png")
    assert list_inputs(str(tmp_path / "one.png")) == [str(tmp_path / "one.png")]


def _loaded(classes: list[str], threshold: float | None, positive: str | None) -> LoadedModel:
    info = ModelInfo("m", 1, 8, classes, (0.5,), (0.5,), threshold=threshold, positive_class=positive)
    return LoadedModel(model=None, info=info, path=Path("m.pt"), device=None)  # type: ignore[arg-type]


def test_decision_rules() -> None:
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9]], dtype=np.float32)
    stored = Decision.for_model(_loaded(["NORMAL", "PNEUMONIA"], 0.8, "PNEUMONIA"), None)
    assert [r.label for r in stored.rows(["a", "b", "c"], probs)] == ["NORMAL", "NORMAL", "PNEUMONIA"]
    assert [r.score for r in stored.rows(["a", "b", "c"], probs)] == pytest.approx([0.3, 0.6, 0.9])
    given = Decision.for_model(_loaded(["NORMAL", "PNEUMONIA"], 0.8, "PNEUMONIA"), 0.25)
    assert [r.label for r in given.rows(["a", "b", "c"], probs)] == ["PNEUMONIA"] * 3
    argmax = Decision.for_model(_loaded(["NORMAL", "PNEUMONIA"], None, None), None)
    assert [r.label for r in argmax.rows(["a", "b", "c"], probs)] == ["NORMAL", "PNEUMONIA", "PNEUMONIA"]
    first_positive = Decision.for_model(_loaded(["sick", "well"], 0.5, "sick"), None)
    assert [r.label for r in first_positive.rows(["a", "b", "c"], probs)] == ["sick", "well", "well"]
    assert first_positive.rows(["a"], probs[:1])[0].score == pytest.approx(0.7)
    three = Decision.for_model(_loaded(["a", "b", "c"], 0.9, None), 0.1)
    rows = three.rows(["x"], np.array([[0.2, 0.5, 0.3]], dtype=np.float32))
    assert (rows[0].label, rows[0].score, three.threshold) == ("b", pytest.approx(0.5), None)


def test_decoding_uses_no_more_processes_than_the_jobs_share_of_cores_allows() -> None:
    from cnnq.jobs.infer import decoders

    assert decoders(2, threads=1) == 0  # a one-core share decodes in the job process itself
    assert decoders(2, threads=2) == 1
    assert decoders(2, threads=8) == 2
    assert decoders(0, threads=8) == 0

"""`cnnq results` and `cnnq explain` through the CLI, on rows written by a real `cnnq run infer`."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cnnq.jobs.reporter import RecordingReporter
from cnnq.jobs.spec import TrainSpec
from cnnq.jobs.train import train_job
from tests.conftest import cnnq_command
from tests.sample_data import make_chest_xray
from tests.sample_poison import write_huge_png

BROKEN = {"empty.png": "empty file", "notes.txt": "not an image: text file"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model file, archive of test images with broken files) shared by this module's tests."""
    root = tmp_path_factory.mktemp("xray")
    chest = make_chest_xray(
        root, per_class={"train": (24, 48), "val": (4, 4), "test": (6, 6)}, size=48, corrupt=0
    )
    spec = TrainSpec(
        dataset="xray",
        data_root=root,
        model="simple-cnn",
        image_size=32,
        epochs=2,
        batch_size=16,
        num_workers=0,
    )
    reporter = RecordingReporter()
    train_job(spec, tmp_path_factory.mktemp("train"), reporter)
    archive = root / "archive"
    shutil.copytree(chest / "test", archive)
    (archive / "empty.png").write_bytes(b"")
    (archive / "notes.txt").write_text("not an image\n")
    return reporter.artifacts["model"], archive


@pytest.fixture
def infer_job_id(cli, cnnq_env, trained: tuple[Path, Path]) -> str:  # type: ignore[no-untyped-def]
    model, archive = trained
    result = cli("run", "infer", "--model-from", model, "--input", archive, "--num-workers", "0", "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)["id"]


def _files(archive: Path) -> list[str]:
    return sorted(str(p) for p in archive.rglob("*") if p.is_file())


def test_csv_to_standard_output_has_one_row_per_input(cli, infer_job_id: str, trained) -> None:  # type: ignore[no-untyped-def]
    _, archive = trained
    result = cli("results", infer_job_id)
    assert result.code == 0, result.stderr
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["input"] for r in records] == _files(archive)
    assert list(records[0]) == ["input", "label", "score", "error", "p_NORMAL", "p_PNEUMONIA"]
    for record in records:
        name = Path(record["input"]).name
        if name in BROKEN:
            assert record["error"] == BROKEN[name] and record["label"] == "" and record["score"] == ""
        else:
            assert record["label"] in ("NORMAL", "PNEUMONIA") and record["error"] == ""
            assert float(record["score"]) == pytest.approx(float(record["p_PNEUMONIA"]))


def test_only_flagged_and_only_positive(cli, infer_job_id: str, trained) -> None:  # type: ignore[no-untyped-def]
    flagged = list(csv.DictReader(io.StringIO(cli("results", infer_job_id, "--only", "flagged").stdout)))
    assert {Path(r["input"]).name: r["error"] for r in flagged} == BROKEN

    positive = list(csv.DictReader(io.StringIO(cli("results", infer_job_id, "--only", "positive").stdout)))
    everything = list(csv.DictReader(io.StringIO(cli("results", infer_job_id).stdout)))
    assert positive == [r for r in everything if r["label"] == "PNEUMONIA"] and len(positive) > 0


def _glossary_csv_names() -> list[str]:
    """The CSV column of `docs/architecture.md`'s glossary table: every name it gives there."""
    doc = Path(__file__).parents[2] / "docs" / "architecture.md"
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| **")]
    cells = [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]
    assert cells and all(len(row) == 6 for row in cells), "the glossary table has six columns"
    return [name for row in cells for name in re.findall(r"`([^`]+)`", row[4])]


def test_cnnq_results_and_the_dashboard_download_write_the_glossary_columns(
    infer_job_id: str, trained: tuple[Path, Path]
) -> None:
    """One CSV: `cnnq results` (its own process) and the dashboard's download button (`results_csv`)
    write the same header and rows, and the columns are the glossary's names."""
    from cnnq.dashboard.review import results_csv

    exported = subprocess.run(
        [*cnnq_command(), "results", infer_job_id], capture_output=True, text=True, timeout=120, check=False
    )
    assert exported.returncode == 0, exported.stderr
    downloaded = results_csv(infer_job_id).decode()
    header = exported.stdout.splitlines()[0].split(",")
    assert downloaded.splitlines()[0].split(",") == header
    assert downloaded == exported.stdout and len(exported.stdout.splitlines()) == len(_files(trained[1])) + 1
    glossary = _glossary_csv_names()
    assert header == [*(name for name in glossary if "<" not in name), "p_NORMAL", "p_PNEUMONIA"]
    assert "p_<class>" in glossary


def test_parquet_and_csv_files(cli, infer_job_id: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "exports" / "rows.parquet"
    result = cli("results", infer_job_id, "--format", "parquet", "--out", out)
    assert result.code == 0, result.stderr
    assert "wrote 14 rows" in result.stdout
    table = pd.read_parquet(out)
    from_csv = pd.read_csv(io.StringIO(cli("results", infer_job_id).stdout))
    assert list(table.columns) == list(from_csv.columns)
    assert table["input"].tolist() == from_csv["input"].tolist()
    assert table["score"].fillna(-1).tolist() == pytest.approx(from_csv["score"].fillna(-1).tolist())
    assert str(table["score"].dtype) == "float64"

    csv_out = tmp_path / "flagged.csv"
    assert cli("results", infer_job_id, "--only", "flagged", "--out", csv_out).code == 0
    assert len(pd.read_csv(csv_out)) == 2


def test_refusals_are_one_line_and_exit_2(cli, infer_job_id: str, cnnq_env) -> None:  # type: ignore[no-untyped-def]
    no_out = cli("results", infer_job_id, "--format", "parquet")
    assert no_out.code == 2 and "--out" in no_out.stderr and len(no_out.stderr.strip().splitlines()) == 1
    missing = cli("results", "infer-nosuch")
    assert missing.code == 2 and "no job" in missing.stderr
    bad_only = cli("results", infer_job_id, "--only", "negative")
    assert bad_only.code == 2


def test_explain_writes_a_heatmap_over_the_image(cli, cnnq_env, trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, archive = trained
    image = next(archive.rglob("pneumonia_*.png"))
    out = tmp_path / "heat.png"
    result = cli("explain", image, "--model-from", model, "--out", out, "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["label"] in ("NORMAL", "PNEUMONIA") and report["explained_class"] == report["label"]
    assert report["score"] == pytest.approx(report["probabilities"]["PNEUMONIA"])
    heat = Image.open(out)
    assert heat.mode == "RGB" and heat.size == Image.open(image).size

    plain = cli("explain", image, "--model-from", model, "--out", tmp_path / "n.png", "--class", "NORMAL")
    assert plain.code == 0 and "Grad-CAM for NORMAL" in plain.stdout

    broken = cli("explain", archive / "notes.txt", "--model-from", model, "--out", tmp_path / "x.png")
    assert broken.code == 2 and "not an image: text file" in broken.stderr
    wrong = cli("explain", image, "--model-from", model, "--out", tmp_path / "y.png", "--class", "CAT")
    assert wrong.code == 2 and "NORMAL, PNEUMONIA" in wrong.stderr

    huge = write_huge_png(tmp_path / "huge.png", 13000, 13000)
    refused = cli("explain", huge, "--model-from", model, "--out", tmp_path / "z.png")
    assert refused.code == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "too large: 13000x13000" in refused.stderr and "CNNQ_MAX_IMAGE_PIXELS" in refused.stderr
    assert not (tmp_path / "z.png").exists()


def test_show_says_which_engine_scored_and_how(cli, infer_job_id: str) -> None:  # type: ignore[no-untyped-def]
    import torch

    from cnnq.jobs.engines import resolve_engine

    shown = cli("show", infer_job_id)
    assert shown.code == 0, shown.stderr
    engine_rows = [
        line.split(None, 1)[1].strip() for line in shown.stdout.splitlines() if line.startswith("engine ")
    ]
    if resolve_engine("auto", torch.device("cpu")) == "onnx-int8":
        # 12 images are too few to calibrate and check an int8 model on: all scored in fp32.
        assert engine_rows == ["onnx-int8: 0 in int8, 12 in fp32 (0 near the boundary)"]
    else:
        assert engine_rows == ["onnx"]

"""Chest X-rays end to end with real Redis, real `cnnq worker` processes and SQLite or PostgreSQL:
train, evaluate with the clinical metrics, score an archive in a bulk job of several shards on two
workers, and survive a worker killed in the middle of a shard."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from cnnq.db.jobs import children_of
from cnnq.db.orm import Job, Prediction
from cnnq.db.records import last_metrics
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.jobs.checkpoint import ModelInfo, load_model_file, save_model_file
from cnnq.jobs.inputs import list_inputs
from cnnq.jobs.onnx_engine import int8_path_for, onnx_path_for
from cnnq.models.registry import build_model
from tests.conftest import finished, job_of, wait_until
from tests.sample_data import corrupt_files, make_chest_xray, train_confident_xray_model, xray_image
from tests.sample_dicom import write_dicom

pytestmark = pytest.mark.slow


def submitted(cli, *args: object) -> str:  # type: ignore[no-untyped-def]
    result = cli("submit", *args, "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)["id"]


def rows_of(bulk_id: str) -> list[tuple[str, str | None, str | None, str]]:
    with session_scope() as s:
        query = select(Prediction.input, Prediction.label, Prediction.error, Prediction.job_id)
        return [tuple(row) for row in s.execute(query.where(Prediction.bulk_id == bulk_id))]


def _archive(chest: Path, folder: Path) -> dict[str, str]:
    """The chest_xray tree plus DICOM files and more broken files; returns {broken path: reason}."""
    shutil.copytree(chest, folder)
    rng = np.random.default_rng(7)
    for i, photometric in enumerate(("MONOCHROME2", "MONOCHROME1", "MONOCHROME2", "MONOCHROME1")):
        pixels = np.asarray(xray_image(i % 2 == 1, 64, rng)).astype(np.uint16) * 16
        if photometric == "MONOCHROME1":
            pixels = 4095 - pixels
        write_dicom(
            folder / "dicom" / f"study_{i}.dcm", pixels, photometric=photometric, slope=1.0, intercept=0.0
        )
    (folder / "dicom" / "report.dcm").write_text("radiology report, not an image\n")
    (folder / "dicom" / "empty.dcm").write_bytes(b"")
    broken = {
        str(folder / path.relative_to(chest)): reason
        for path, reason in zip(corrupt_files(chest), ("truncated image", "empty file"), strict=True)
    }
    broken[str(folder / "train" / "NORMAL" / "notes.txt")] = "not an image: text file"
    broken[str(folder / "dicom" / "report.dcm")] = "not an image: not a DICOM file"
    broken[str(folder / "dicom" / "empty.dcm")] = "empty file"
    return broken


def _truth(path: str) -> str | None:
    for name in ("NORMAL", "PNEUMONIA"):
        if f"/{name}/" in path:
            return name
    return None


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite: in the tests beside it
def test_train_evaluate_and_bulk_score_an_xray_archive_on_two_workers(  # type: ignore[no-untyped-def]
    queue_env, start_workers, cli, tmp_path: Path
) -> None:
    chest = make_chest_xray(
        tmp_path / "data", per_class={"train": (60, 120), "val": (6, 6), "test": (20, 20)}, size=64
    )
    start_workers("--cpu", "--concurrency", "2", expect=2)

    options = "--model simple-cnn --image-size 64 --epochs 2 --batch-size 32 --num-workers 0 --device cpu"
    train_id = submitted(
        cli,
        "train",
        "--dataset",
        "xray",
        "--data-root",
        chest.parent,
        "--threshold",
        "youden",
        *options.split(),
    )
    wait_until(lambda: finished(train_id), 240, "training")
    assert job_of(train_id).status == JobStatus.SUCCEEDED, job_of(train_id).error_message

    eval_id = submitted(cli, "eval", "--model-from", train_id, "--num-workers", "0", "--device", "cpu")
    wait_until(lambda: finished(eval_id), 120, "evaluation")
    evaluation = job_of(eval_id)
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.error_message
    with session_scope() as s:
        metrics = last_metrics(s, eval_id)
    for name in ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "threshold"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["roc_auc"] >= 0.8 and metrics["accuracy"] >= 0.75
    report = evaluation.result or {}
    assert np.asarray(report["confusion_matrix"]).sum() == 40
    assert report["roc"] and report["positive_class"] == "PNEUMONIA"

    archive = tmp_path / "archive"
    broken = _archive(chest, archive)
    inputs = list_inputs(str(archive))
    assert len(inputs) == 241
    bulk_id = submitted(
        cli, "infer", "--model-from", train_id, "--input", archive, "--shard-size", "60", "--device", "cpu"
    )
    with session_scope() as s:
        shards = children_of(s, bulk_id)
    assert len(shards) == -(-len(inputs) // 60) >= 4
    wait_until(lambda: finished(bulk_id), 300, "the bulk job")

    parent = job_of(bulk_id)
    assert parent.status == JobStatus.SUCCEEDED, parent.error_message
    with session_scope() as s:
        shards = children_of(s, bulk_id)
    assert all(shard.status == JobStatus.SUCCEEDED for shard in shards)
    assert len({shard.worker for shard in shards}) == 2, "both workers took shards"

    rows = rows_of(bulk_id)
    assert len(rows) == len(inputs) and {row[0] for row in rows} == set(inputs)
    flagged = {path: error for path, _, error, _ in rows if error is not None}
    assert flagged == broken
    labelled = [(path, label) for path, label, error, _ in rows if error is None and _truth(path)]
    assert np.mean([label == _truth(path) for path, label in labelled]) >= 0.8
    dicoms = {Path(path).name: label for path, label, error, _ in rows if path.endswith(".dcm") and not error}
    assert len(dicoms) == 4

    positive = sum(label == "PNEUMONIA" for _, label, error, _ in rows if error is None)
    result = parent.result or {}
    assert result["flagged"] == len(broken)
    assert result["scored"] == len(inputs) - len(broken)
    assert result["positive"] == positive

    exported = cli("results", bulk_id, "--only", "flagged")
    assert exported.code == 0, exported.stderr
    assert {r["input"]: r["error"] for r in csv.DictReader(io.StringIO(exported.stdout))} == broken


def _children_pids(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_worker_killed_mid_shard_leaves_no_duplicate_and_no_gap(  # type: ignore[no-untyped-def]
    queue_env, start_workers, cli, tmp_path: Path
) -> None:
    # An untrained ResNet-18 at 224 px in eager mode is slow enough (seconds per shard, even on a fast
    # machine) to be caught in the middle of a shard.
    model_file = tmp_path / "models" / "resnet.pt"
    model = build_model("resnet18", in_channels=1, image_size=224, num_classes=2)
    info = ModelInfo("resnet18", 1, 224, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,), positive_class="PNEUMONIA")
    save_model_file(model_file, model, info)
    chest = make_chest_xray(tmp_path / "data", per_class={"test": (150, 150)}, size=64, corrupt=2)
    inputs = list_inputs(str(chest))

    first = start_workers("--cpu")
    options = "--shard-size 160 --batch-size 8 --device cpu --engine eager"
    bulk_id = submitted(cli, "infer", "--model-from", model_file, "--input", chest, *options.split())

    def running_shard() -> Job | None:
        with session_scope() as s:
            for shard in children_of(s, bulk_id):
                done = s.scalar(select(func.count()).where(Prediction.job_id == shard.id)) or 0
                if shard.status == JobStatus.RUNNING and done >= 16:
                    return shard
        return None

    wait_until(lambda: running_shard() is not None, 180, "a shard half-way through")
    [celery_pid] = first.celery_pids()
    job_processes = _children_pids(celery_pid)
    os.kill(celery_pid, signal.SIGKILL)
    wait_until(
        lambda: not any(_alive(pid) for pid in job_processes), 15, "the job process to die with its worker"
    )
    killed = running_shard()
    assert killed is not None
    with session_scope() as s:
        at_kill = s.scalar(select(func.count()).where(Prediction.job_id == killed.id)) or 0
        shard_size = len(killed.spec["inputs"])
    assert 16 <= at_kill < shard_size, "killed in the middle of the shard"

    start_workers("--cpu")
    wait_until(lambda: finished(bulk_id), 300, "the bulk job to finish on the second worker")

    assert job_of(bulk_id).status == JobStatus.SUCCEEDED, job_of(bulk_id).error_message
    redone = job_of(killed.id)
    assert redone.status == JobStatus.SUCCEEDED and redone.attempts == 2
    assert redone.worker != killed.worker
    result = redone.result or {}
    assert result["already_done"] == at_kill
    assert result["already_done"] + result["scored"] + result["flagged"] == shard_size

    rows = rows_of(bulk_id)
    assert len(rows) == len(inputs) and sorted(row[0] for row in rows) == sorted(inputs)
    assert {path: error for path, _, error, _ in rows if error} == {
        str(path): reason
        for path, reason in zip(corrupt_files(chest), ("truncated image", "empty file"), strict=True)
    } | {str(chest / "train" / "NORMAL" / "notes.txt"): "not an image: text file"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: in the tests beside it
def test_int8_bulk_scoring_on_two_workers_gives_the_labels_fp32_gives(  # type: ignore[no-untyped-def]
    queue_env, start_workers, cli, tmp_path: Path
) -> None:
    """Two shards start together on two workers, each scoring with the int8 model and its measure that
    the training job left beside the model file; every label matches the eager engine's."""
    chest = make_chest_xray(
        tmp_path / "data",
        per_class={"train": (24, 48), "val": (8, 8), "test": (400, 400)},
        size=40,
        corrupt=0,
    )
    model_file = train_confident_xray_model(chest, tmp_path / "train")
    int8_file = int8_path_for(onnx_path_for(load_model_file(model_file), model_file.parent))
    quantized = int8_file.stat().st_mtime_ns
    start_workers("--cpu", "--concurrency", "2", expect=2)

    def bulk(engine: str) -> str:
        options = f"--shard-size 400 --device cpu --num-workers 0 --engine {engine}"
        bulk_id = submitted(
            cli, "infer", "--model-from", model_file, "--input", chest / "test", *options.split()
        )
        wait_until(lambda: finished(bulk_id), 240, f"the {engine} bulk job")
        assert job_of(bulk_id).status == JobStatus.SUCCEEDED, job_of(bulk_id).error_message
        return bulk_id

    int8_id, eager_id = bulk("onnx-int8"), bulk("eager")

    inputs = list_inputs(str(chest / "test"))
    int8_rows = {path: label for path, label, _, _ in rows_of(int8_id)}
    eager_rows = {path: label for path, label, _, _ in rows_of(eager_id)}
    assert len(rows_of(int8_id)) == len(inputs) == len(int8_rows) == 800
    assert int8_rows == eager_rows
    with session_scope() as s:
        shards = children_of(s, int8_id)
    assert len(shards) == 2 and len({shard.worker for shard in shards}) == 2
    reports = [(shard.result or {})["engine_report"] for shard in shards]
    assert all(report["int8_scored"] > 0 and not report["fell_back_to_fp32"] for report in reports), [
        (shard.result or {}).get("engine_report") for shard in shards
    ]

    assert int8_file.stat().st_mtime_ns == quantized, "no shard quantized the model again"
    assert len({report["max_difference"] for report in reports}) == 1 and reports[0]["max_difference"] > 0
    shown = cli("show", shards[0].id)
    assert "onnx-int8:" in shown.stdout and "in int8" in shown.stdout

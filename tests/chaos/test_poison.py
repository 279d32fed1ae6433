"""Poison inputs in a bulk job: flagged with their reason, never fatal to their shard.

An archive of real X-ray-like PNG, JPEG and DICOM files holds a 13000x13000 16-bit PNG (338 MB of
pixels, 1.35 GB once widened to float64) and a 1 KB DICOM whose header declares 65535x65535 pixels.
A trained model scores the archive in a bulk job of two shards on real `cnnq worker` processes
through a real Redis: both poison inputs become flagged rows saying why, every other input is scored, every
shard SUCCEEDED, and `cnnq results` lists them all.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnq.db.jobs import children_of
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.jobs.inputs import list_inputs
from tests.conftest import finished, job_of, wait_until
from tests.sample_data import make_chest_xray, xray_image
from tests.sample_dicom import write_dicom
from tests.sample_poison import write_huge_png, write_lying_dicom

pytestmark = pytest.mark.slow


def _submitted(cli, *args: object) -> dict:  # type: ignore[no-untyped-def]
    result = cli("submit", *args, "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def _archive(chest: Path, folder: Path) -> dict[str, str]:
    """The test split, two real DICOM films and the two poison files; returns {poison path: reason}."""
    shutil.copytree(chest / "test", folder)
    rng = np.random.default_rng(3)
    for i in range(2):
        pixels = np.asarray(xray_image(i == 1, 48, rng)).astype(np.uint16) * 16  # 12-bit
        write_dicom(folder / "dicom" / f"film_{i}.dcm", pixels)
    huge = write_huge_png(folder / "huge.png", 13000, 13000)
    lying = write_lying_dicom(folder / "dicom" / "lying.dcm", 65535, 65535)
    return {str(huge): "too large: 13000x13000", str(lying): "too large: 65535x65535"}


def _trained_model(chest: Path, workdir: Path) -> Path:
    """A simple CNN trained for two epochs in this process (seconds): the model file it wrote."""
    from cnnq.jobs.reporter import RecordingReporter
    from cnnq.jobs.spec import TrainSpec
    from cnnq.jobs.train import train_job

    spec = TrainSpec(
        dataset="xray", data_root=chest.parent, model="simple-cnn", image_size=32, epochs=2,
        batch_size=16, num_workers=0,
    )  # fmt: skip
    reporter = RecordingReporter()
    train_job(spec, workdir, reporter)
    return reporter.artifacts["model"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_poison_inputs_are_flagged_and_every_shard_succeeds(  # type: ignore[no-untyped-def]
    queue_env, start_workers, cli, tmp_path: Path
) -> None:
    chest = make_chest_xray(
        tmp_path / "data", per_class={"train": (16, 32), "val": (4, 4), "test": (12, 12)}, size=48, corrupt=0
    )
    model_file = _trained_model(chest, tmp_path / "train")
    poison = _archive(chest, tmp_path / "archive")
    inputs = list_inputs(str(tmp_path / "archive"))
    assert len(inputs) == 24 + 2 + 2
    start_workers("--cpu", "--concurrency", "2", expect=2)

    bulk = _submitted(
        cli, "infer", "--model-from", model_file, "--input", tmp_path / "archive", "--shard-size", "14",
        "--engine", "eager", "--num-workers", "0", "--device", "cpu",
    )  # fmt: skip
    wait_until(lambda: finished(bulk["id"]), 180, "the bulk job")

    parent = job_of(bulk["id"])
    with session_scope() as session:
        shards = [(shard.id, shard.status, shard.error_message) for shard in children_of(session, bulk["id"])]
    assert len(shards) == 2
    assert all(status == JobStatus.SUCCEEDED for _, status, _ in shards), shards
    assert parent.status == JobStatus.SUCCEEDED, parent.error_message
    assert (parent.result or {})["flagged"] == 2 and (parent.result or {})["scored"] == len(inputs) - 2

    exported = cli("results", bulk["id"])
    assert exported.code == 0, exported.stderr
    rows = {row["input"]: row for row in csv.DictReader(io.StringIO(exported.stdout))}
    assert sorted(rows) == sorted(inputs)
    assert {path: row["error"] for path, row in rows.items() if row["error"]} == poison
    for path, row in rows.items():
        if path not in poison:
            assert row["label"] in ("NORMAL", "PNEUMONIA") and 0 <= float(row["score"]) <= 1, row
    flagged = cli("results", bulk["id"], "--only", "flagged")
    assert {row["input"]: row["error"] for row in csv.DictReader(io.StringIO(flagged.stdout))} == poison

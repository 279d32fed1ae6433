"""`--model-from JOB` takes only a SUCCEEDED training job's model, and a job loads the bytes it hashed.

Real job rows in a real SQLite database, real model files, the real CLI; the accepted submit goes
through a real Redis and the job runs through the real claim path (`execute_job`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select, update

from cnnq.db.jobs import create_job, get_job
from cnnq.db.records import record_artifact
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.tables import jobs
from cnnq.file_digest import file_sha256
from cnnq.jobs.checkpoint import ModelInfo, save_model_file
from cnnq.models.registry import build_model
from cnnq.outputs import MODEL_ARTIFACT
from tests.sample_data import make_chest_xray

INFO = ModelInfo("simple-cnn", 1, 32, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,))


def write_model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return save_model_file(path, build_model("simple-cnn", in_channels=1, image_size=32, num_classes=2), INFO)


@pytest.fixture
def model_file(cnnq_env: dict[str, str]) -> Path:
    return write_model(Path(cnnq_env["CNNQ_ARTIFACT_ROOT"]) / "train-model" / "best.pt", seed=0)


@pytest.fixture
def training_job(model_file: Path) -> Callable[[JobStatus], str]:
    """`training_job(status)`: the id of a training job row in that status whose model artifact is
    `model_file` (a RUNNING job has one: `best.pt` is written at every better epoch)."""

    def make(status: JobStatus) -> str:
        with session_scope() as session:
            job = create_job(
                session, kind="train", spec={"kind": "train", "model": "simple-cnn"}, queue="cpu"
            )
            session.execute(update(jobs).where(jobs.c.id == job.id).values(status=status))
            digest = file_sha256(model_file)
            record_artifact(
                session, job.id, MODEL_ARTIFACT, str(model_file), model_file.stat().st_size, digest
            )
            return job.id

    return make


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return make_chest_xray(tmp_path / "data", per_class={"test": (3, 3)}, size=32, corrupt=0) / "test"


def _jobs() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(jobs)) or 0


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.QUEUED])
def test_a_training_job_not_yet_succeeded_is_refused_by_every_command(  # type: ignore[no-untyped-def]
    cli, training_job, images: Path, tmp_path: Path, status: JobStatus
) -> None:
    job_id = training_job(status)
    image = next(images.rglob("*.png"))
    expected = (
        f"error: --model-from: job {job_id} is {status}; its model is ready once it has SUCCEEDED "
        f"(`cnnq wait {job_id}`)\n"
    )
    for args in (
        ("submit", "eval", "--model-from", job_id),
        ("submit", "infer", "--model-from", job_id, "--input", images),
        ("run", "infer", "--model-from", job_id, "--input", images),
        ("explain", image, "--model-from", job_id, "--out", tmp_path / "heat.png"),
    ):
        result = cli(*args)
        assert (result.code, result.stderr, result.stdout) == (2, expected, ""), args
    assert _jobs() == 1, "nothing recorded"
    assert not (tmp_path / "heat.png").exists()


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_training_job_that_ended_otherwise_is_refused_with_retry_advice(  # type: ignore[no-untyped-def]
    cli, training_job, status: JobStatus
) -> None:
    job_id = training_job(status)
    result = cli("submit", "eval", "--model-from", job_id)
    assert result.code == 2
    assert result.stderr == (
        f"error: --model-from: job {job_id} is {status}; only a SUCCEEDED training job's model is used "
        f"(`cnnq retry {job_id}` trains it again)\n"
    )
    assert _jobs() == 1


def test_a_succeeded_job_is_taken_and_the_job_refuses_a_model_file_changed_since(  # type: ignore[no-untyped-def]
    cli, use_settings, broker_url: str, training_job, model_file: Path, images: Path
) -> None:
    from cnnq.lifecycle.claim import execute_job

    use_settings(CNNQ_BROKER_URL=broker_url)
    job_id = training_job(JobStatus.SUCCEEDED)
    submitted = cli(
        "submit", "infer", "--model-from", job_id, "--input", images, "--num-workers", "0", "--json"
    )
    assert submitted.code == 0, submitted.stderr
    infer = json.loads(submitted.stdout)
    assert infer["spec"]["model_file"] == str(model_file)
    assert infer["spec"]["model_file_sha256"] == file_sha256(model_file)

    write_model(model_file, seed=1)  # other weights in the same file, after the submit
    assert execute_job(infer["id"]) == JobStatus.FAILED
    with session_scope() as session:
        job = get_job(session, infer["id"])
        error = job.error_message or ""
    assert f"{model_file} has changed since this job was submitted" in error
    assert "submit the job again" in error

    again = cli("submit", "infer", "--model-from", job_id, "--input", images, "--num-workers", "0", "--json")
    assert again.code == 0, again.stderr
    assert execute_job(json.loads(again.stdout)["id"]) == JobStatus.SUCCEEDED

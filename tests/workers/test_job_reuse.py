"""A worker reuses its job process from job to job: real Redis, real `cnnq worker` processes, SQLite.

The reused process must give every job the result a fresh process gives it, a crash in it must take
only the job it ran, and a process over its memory ceiling is replaced between jobs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from cnnq.db.orm import Metric, Prediction
from cnnq.db.records import log_lines
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec
from cnnq.lifecycle.submit import Placement, submit_job
from tests.conftest import finished, job_of, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

_STARTED = re.compile(r"^started on \S+ \(attempt \d+, process (\d+)\)$")


def _train(mnist_root: Path, **changes: object) -> TrainSpec:
    options: dict[str, object] = {
        "model": "lenet",
        "dataset": "mnist",
        "data_root": mnist_root,
        "limit": 256,
        "epochs": 1,
        "batch_size": 64,
        "num_workers": 0,
        "device": "cpu",
    }
    return TrainSpec.model_validate(options | changes)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small trained model files (LeNet and the MNIST tutorial CNN), trained here, not by a worker."""
    from cnnq.jobs.reporter import RecordingReporter
    from cnnq.jobs.train import train_job
    from tests.conftest import SHARED_DATASETS

    if not (SHARED_DATASETS / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("real MNIST not found")
    files = {}
    for name in ("lenet", "mnist-cnn"):
        reporter = RecordingReporter()
        train_job(_train(SHARED_DATASETS, model=name), tmp_path_factory.mktemp(name), reporter)
        files[name] = reporter.artifacts["model"]
    return files


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Twenty 28x28 grayscale PNG files."""
    folder = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(20):
        path = folder / f"digit-{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L").save(path)
        paths.append(str(path))
    return paths


def _scoring(model: Path, engine: str, inputs: list[str]) -> InferSpec:
    return InferSpec(
        model_from="test", model_file=model, input=inputs[0], inputs=inputs, engine=engine, device="cpu"
    )


def _ten_jobs(mnist_root: Path, models: dict[str, Path], digits: list[str]) -> list[Any]:
    """Ten jobs of every kind, alternating between models and engines."""

    def infer(model: str, engine: str) -> InferSpec:
        return _scoring(models[model], engine, digits)

    def evaluate(model: str) -> EvalSpec:
        return EvalSpec(model_from="test", model_file=models[model], limit=300, device="cpu", num_workers=0)

    return [
        _train(mnist_root),
        infer("lenet", "eager"),
        evaluate("lenet"),
        infer("mnist-cnn", "onnx"),
        _train(mnist_root, model="mnist-cnn", seed=3),
        infer("lenet", "onnx"),
        evaluate("mnist-cnn"),
        infer("mnist-cnn", "eager"),
        _train(mnist_root, seed=1, optimizer="adam", augment="rotation=10"),
        infer("lenet", "onnx"),
    ]


def _process_of(job_id: str) -> int:
    with session_scope() as s:
        pids = [int(m.group(1)) for line in log_lines(s, job_id) if (m := _STARTED.match(line.line))]
    assert len(pids) == 1, pids
    return pids[0]


def _run_all(specs: list[Any]) -> list[str]:
    ids = []
    for spec in specs:  # one at a time, so that each job runs after the one before, in order
        job_id = submit_job(spec, Placement())
        wait_until(lambda job_id=job_id: finished(job_id), 240, f"job {job_id}")
        assert job_of(job_id).status == JobStatus.SUCCEEDED, job_of(job_id).error_message
        ids.append(job_id)
    return ids


def _outcome(job_id: str) -> dict[str, Any]:
    """What a job computed: its result, metrics and predictions, without timings and paths."""

    def keep(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: keep(v)
                for k, v in value.items()
                if "second" not in k and k not in ("output", "checkpoint", "model_file", "onnx_file")
            }
        return value

    with session_scope() as s:
        metrics = s.execute(
            select(Metric.name, Metric.step, Metric.value)
            .where(Metric.job_id == job_id, ~Metric.name.contains("second"))
            .order_by(Metric.name, Metric.step)
        ).all()
        predictions = s.execute(
            select(Prediction.input, Prediction.label, Prediction.probabilities)
            .where(Prediction.job_id == job_id)
            .order_by(Prediction.input)
        ).all()
    return {
        "result": keep(job_of(job_id).result),
        "metrics": [tuple(row) for row in metrics],
        "predictions": [tuple(row) for row in predictions],
    }


def test_a_reused_job_process_runs_ten_jobs_as_fresh_processes_do(  # type: ignore[no-untyped-def]
    queue_env, use_settings, start_workers, mnist_root: Path, models: dict[str, Path], digits: list[str]
) -> None:
    specs = _ten_jobs(mnist_root, models, digits)
    use_settings(CNNQ_TORCH_THREADS="1")  # the same threads in both runs, so results compare exactly
    reusing = start_workers("--cpu")
    reused = _run_all(specs)
    assert len({_process_of(job_id) for job_id in reused}) == 1, "all ten jobs ran in one process"
    reusing.stop()

    # A fresh process for every job; two at a time, since their order does not matter.
    use_settings(CNNQ_STANDBY_PROCESS="false")
    start_workers("--cpu", "--concurrency", "2", expect=2)
    fresh = [submit_job(spec, Placement()) for spec in specs]
    for job_id in fresh:
        wait_until(lambda job_id=job_id: finished(job_id), 240, f"job {job_id}")
        assert job_of(job_id).status == JobStatus.SUCCEEDED, job_of(job_id).error_message
    assert len({_process_of(job_id) for job_id in fresh}) == 10, "each job ran in a process of its own"

    for spec, a, b in zip(specs, reused, fresh, strict=True):
        reused_outcome, fresh_outcome = _outcome(a), _outcome(b)
        assert reused_outcome["metrics"] or reused_outcome["predictions"] or reused_outcome["result"]
        assert reused_outcome == fresh_outcome, spec.kind


def test_a_crash_or_failure_in_a_reused_process_takes_its_job_alone_and_the_next_runs_in_a_fresh_one(  # type: ignore[no-untyped-def]
    queue_env, start_workers, mnist_root: Path, models: dict[str, Path], digits: list[str], tmp_path: Path
) -> None:
    start_workers("--cpu")
    scoring = _scoring(models["lenet"], "onnx", digits)
    [first] = _run_all([scoring])
    process = _process_of(first)

    long_one = submit_job(_train(mnist_root, epochs=50, limit=2048), Placement())
    wait_until(lambda: job_of(long_one).status == JobStatus.RUNNING, 60, "the long job to start")
    assert _process_of(long_one) == process, "the second job reused the first one's process"
    os.kill(process, signal.SIGKILL)
    wait_until(lambda: finished(long_one), 60, "the crashed job to end")
    crashed = job_of(long_one)
    assert (crashed.status, crashed.error_type) == (JobStatus.FAILED, "JobProcessDied"), crashed.error_message

    [after] = _run_all([scoring])
    fresh = _process_of(after)
    assert fresh != process
    assert job_of(first).status == JobStatus.SUCCEEDED
    assert _outcome(after)["predictions"] == _outcome(first)["predictions"]

    doomed = tmp_path / "doomed.pt"  # a model file gone by the time the job runs: the job fails
    shutil.copy(models["lenet"], doomed)
    failing = submit_job(_scoring(doomed, "onnx", digits), Placement())
    doomed.unlink()
    wait_until(lambda: finished(failing), 60, "the failing job")
    assert job_of(failing).status == JobStatus.FAILED
    assert _process_of(failing) == fresh, "a process is reused after a job that succeeded"
    [last] = _run_all([scoring])
    assert _process_of(last) != fresh, "a process is replaced after a job that failed"


def test_a_job_process_over_its_memory_ceiling_or_past_its_jobs_is_replaced_between_jobs(  # type: ignore[no-untyped-def]
    queue_env, use_settings, start_workers, models: dict[str, Path], digits: list[str]
) -> None:
    scoring = _scoring(models["lenet"], "eager", digits)
    use_settings(CNNQ_JOB_PROCESS_MAX_MB="64")  # below what any process holding torch needs
    worker = start_workers("--cpu")
    jobs = _run_all([scoring, scoring])
    assert len({_process_of(job_id) for job_id in jobs}) == 2
    assert "over CNNQ_JOB_PROCESS_MAX_MB=64" in worker.log.read_text()
    worker.stop()

    use_settings(CNNQ_JOB_PROCESS_MAX_MB="100000", CNNQ_JOB_PROCESS_MAX_JOBS="2")
    start_workers("--cpu")
    jobs = _run_all([scoring, scoring])
    [worn_out] = {_process_of(job_id) for job_id in jobs}
    # Past its share of jobs, a process runs on until its successor has imported torch, then goes.
    for _ in range(60):
        [job_id] = _run_all([scoring])
        if _process_of(job_id) != worn_out:
            break
        time.sleep(1)
    assert _process_of(job_id) != worn_out, "the worn-out process was never replaced"
    wait_until(lambda: not Path(f"/proc/{worn_out}").exists(), 30, "the worn-out process to exit")

"""The training job on tiny sets in every on-disk format: metrics, artifacts, resume, cancel, early stop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnq.jobs.checkpoint import load_checkpoint, load_model_file
from cnnq.jobs.evaluate import evaluate_job
from cnnq.jobs.reporter import JobCancelled, JobInterrupted, RecordingReporter
from cnnq.jobs.runner import run_job
from cnnq.jobs.spec import EvalSpec, TrainSpec
from cnnq.jobs.train import train_job
from tests.sample_data import corrupt_files, make_chest_xray, make_cifar10, make_image_folder, make_mnist

EPOCH_METRICS = {
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "images_per_second",
    "epoch_seconds",
}


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("mnist"), n_train=300, n_test=60)


def mnist_spec(root: Path, **options: object) -> TrainSpec:
    defaults: dict[str, object] = {
        "model": "lenet",
        "dataset": "mnist",
        "data_root": root,
        "epochs": 2,
        "batch_size": 32,
        "num_workers": 0,
        "device": "cpu",
    }
    return TrainSpec.model_validate(defaults | options)


def test_train_reports_every_epoch_and_writes_loadable_artifacts(tiny_mnist: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    train_job(mnist_spec(tiny_mnist), tmp_path, reporter)
    summary = reporter.summary

    history = reporter.history()
    assert [row["epoch"] for row in history] == [1, 2]
    assert set(history[0]) >= EPOCH_METRICS
    assert EPOCH_METRICS | {"test_loss", "test_accuracy"} <= set(history[1])
    assert all(0.0 <= row["val_accuracy"] <= 1.0 and row["images_per_second"] > 0 for row in history)
    assert summary["test_accuracy"] == history[1]["test_accuracy"]
    assert reporter.summary == summary and "lr" in summary["hyperparameters"]  # the stored result
    # A learnable synthetic set: two epochs beat chance (10 classes) by far.
    assert history[1]["test_accuracy"] > 0.5

    assert reporter.artifacts == {"checkpoint": tmp_path / "last.pt", "model": tmp_path / "best.pt"}
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    assert {"model", "optimizer", "scheduler", "scaler", "rng"} <= set(checkpoint)
    loaded = load_model_file(tmp_path / "best.pt", "cpu")
    assert not loaded.model.training
    assert (loaded.info.model, loaded.info.in_channels, loaded.info.image_size) == ("lenet", 1, 28)
    assert loaded.info.classes == [str(d) for d in range(10)] or len(loaded.info.classes) == 10
    assert (
        loaded.info.dataset == "mnist"
        and loaded.info.threshold is None
        and loaded.info.positive_class is None
    )
    assert reporter.progress_updates[-1][0] == pytest.approx(1.0)

    # Evaluating the same model on the same test split gives the test_accuracy training reported.
    evaluation = RecordingReporter()
    evaluate_job(EvalSpec(model_from="job", model_file=tmp_path / "best.pt"), tmp_path / "eval", evaluation)
    assert evaluation.metric_rows[(0, "accuracy")] == pytest.approx(history[1]["test_accuracy"])
    assert {"precision", "recall", "f1"} <= {name for _, name in evaluation.metric_rows}
    assert "roc_auc" not in {name for _, name in evaluation.metric_rows}
    matrix = evaluation.summary["confusion_matrix"]
    assert len(matrix) == 10 and sum(map(sum, matrix)) == evaluation.summary["num_samples"] == 60
    assert len(evaluation.summary["per_class"]) == 10


def test_cifar10_pickles_train_with_cifar_cnn(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path / "data", n_train=120, n_test=30)
    spec = TrainSpec(
        model="cifar-cnn", dataset="cifar10", data_root=root, epochs=1, batch_size=32, num_workers=0
    )
    reporter = RecordingReporter()
    train_job(spec, tmp_path / "job", reporter)
    assert load_model_file(tmp_path / "job" / "best.pt").info.in_channels == 3
    assert {"test_accuracy", "val_accuracy"} <= set(reporter.history()[-1])


def test_an_image_folder_trains_through_run_job(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "pets", per_class=16, size=32)
    spec = TrainSpec(
        model="lenet",
        dataset="folder",
        data_root=root,
        image_size=32,
        val_split=0.25,
        epochs=2,
        batch_size=8,
        num_workers=0,
        augment="flip",
    )
    reporter = RecordingReporter()
    run_job(spec, tmp_path / "job", reporter)
    loaded = load_model_file(tmp_path / "job" / "best.pt")
    assert loaded.info.classes == ["cat", "dog"]
    assert loaded.info.positive_class == "dog"
    assert [row["epoch"] for row in reporter.history()] == [1, 2]


def test_an_xray_tree_with_broken_files_trains_and_evaluates(tmp_path: Path) -> None:
    chest = make_chest_xray(tmp_path / "data", size=32)
    spec = TrainSpec(
        model="lenet",
        dataset="xray",
        data_root=chest.parent,
        image_size=32,
        epochs=3,
        batch_size=16,
        num_workers=0,
        threshold="youden",
    )
    reporter = RecordingReporter()
    train_job(spec, tmp_path / "train", reporter)
    summary = reporter.summary

    log = "\n".join(reporter.lines)
    for broken in corrupt_files(chest):
        assert broken.name in log
    assert any("loss weights" in line for line in reporter.lines)  # 30 NORMAL vs 60 PNEUMONIA
    model = load_model_file(tmp_path / "train" / "best.pt")
    assert model.info.positive_class == "PNEUMONIA"
    assert model.info.threshold is not None and 0.0 <= model.info.threshold <= 1.0
    assert summary["threshold"] == model.info.threshold

    evaluation = RecordingReporter()
    eval_spec = EvalSpec(model_from="job", model_file=tmp_path / "train" / "best.pt", num_workers=0)
    evaluate_job(eval_spec, tmp_path / "eval", evaluation)
    metrics = {name: value for (step, name), value in evaluation.metric_rows.items() if step == 0}
    assert {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "sensitivity",
        "specificity",
        "threshold",
    } <= set(metrics)
    assert metrics["threshold"] == pytest.approx(model.info.threshold)
    result = evaluation.summary
    assert result["split"] == "test" and result["num_samples"] == 20
    assert result["positive_class"] == "PNEUMONIA"
    assert sum(map(sum, result["confusion_matrix"])) == 20
    assert len(result["roc"]["fpr"]) == len(result["roc"]["tpr"]) <= 200
    matrix = result["confusion_matrix"]  # rows: true NORMAL, PNEUMONIA
    assert metrics["sensitivity"] == pytest.approx(matrix[1][1] / sum(matrix[1]))
    assert metrics["specificity"] == pytest.approx(matrix[0][0] / sum(matrix[0]))
    assert evaluation.artifacts["report"].exists()


@dataclass
class CancelAfterEpoch(RecordingReporter):
    """Asks to cancel once the metrics of `epoch` are in, like a user pressing cancel then."""

    epoch: int = 1

    def check_stop(self) -> None:
        if any(step >= self.epoch for step, _ in self.metric_rows):
            raise JobCancelled("cancelled on request")


def test_a_resumed_run_matches_an_uninterrupted_one(tiny_mnist: Path, tmp_path: Path) -> None:
    # mnist-cnn has dropout and the augmentation draws random numbers: both must resume exactly.
    spec = mnist_spec(tiny_mnist, model="mnist-cnn", epochs=3, augment="shift=0.1")
    whole = RecordingReporter()
    train_job(spec, tmp_path / "whole", whole)

    with pytest.raises(JobCancelled):
        train_job(spec, tmp_path / "split", CancelAfterEpoch(epoch=1))
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    resumed = RecordingReporter()
    train_job(spec, tmp_path / "split", resumed)

    assert [row["epoch"] for row in resumed.history()] == [2, 3]
    assert any("after epoch 1" in line for line in resumed.lines)
    timing = {"images_per_second", "epoch_seconds"}
    strip = [{k: v for k, v in row.items() if k not in timing} for row in whole.history()]
    assert [{k: v for k, v in row.items() if k not in timing} for row in resumed.history()] == strip[1:]
    final_whole = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    final_split = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(final_whole[name], final_split[name]) for name in final_whole)


@dataclass
class StopAtCheck(RecordingReporter):
    """Its worker stops at the `at`-th stop check (the job asks after every batch)."""

    at: int = 0
    checks: int = 0

    def check_stop(self) -> None:
        self.checks += 1
        if self.checks == self.at:
            raise JobInterrupted("its worker is stopping")


def test_a_run_stopped_mid_epoch_resumes_from_that_batch_exactly(tiny_mnist: Path, tmp_path: Path) -> None:
    """A graceful stop (`cnnq down`, Ctrl-C) saves the epoch so far; the next run carries on from the
    batch after it and ends with the same metrics and weights as a run never stopped."""
    spec = mnist_spec(tiny_mnist, model="mnist-cnn", epochs=3, augment="shift=0.1")
    whole = RecordingReporter()
    train_job(spec, tmp_path / "whole", whole)

    stopper = StopAtCheck(at=15)  # 9 batches, a validation batch and the epoch's end make 11 per epoch
    with pytest.raises(JobInterrupted):
        train_job(spec, tmp_path / "split", stopper)
    saved = load_checkpoint(tmp_path / "split" / "last.pt")
    assert (saved["epoch"], saved["batches_done"]) == (1, 4)
    assert any("stopping in epoch 2 after batch 4 of 9" in line for line in stopper.lines)
    resumed = RecordingReporter()
    train_job(spec, tmp_path / "split", resumed)

    assert any("batch 4 of epoch 2" in line for line in resumed.lines)
    timing = {"images_per_second", "epoch_seconds"}
    strip = [{k: v for k, v in row.items() if k not in timing} for row in whole.history()]
    # The epoch's train_loss is summed in two parts: equal but for float rounding.
    expected = [{k: pytest.approx(v, rel=1e-6) for k, v in row.items()} for row in strip[1:]]
    assert [{k: v for k, v in row.items() if k not in timing} for row in resumed.history()] == expected
    final_whole = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    final_split = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(final_whole[name], final_split[name]) for name in final_whole)


@dataclass
class CancelDuringTraining(RecordingReporter):
    """Asks to cancel `delay` seconds after training first reports progress; notes when it was asked."""

    delay: float = 0.5
    requested_at: float | None = None
    polls: list[float] = field(default_factory=list)

    def progress(self, fraction: float, message: str | None = None) -> None:
        super().progress(fraction, message)
        if self.requested_at is None:
            self.requested_at = time.monotonic() + self.delay

    def check_stop(self) -> None:
        self.polls.append(time.monotonic())
        if self.requested_at is not None and self.polls[-1] >= self.requested_at:
            raise JobCancelled("cancelled on request")


def test_cancel_stops_training_within_two_seconds(tiny_mnist: Path, tmp_path: Path) -> None:
    reporter = CancelDuringTraining()
    with pytest.raises(JobCancelled):
        train_job(mnist_spec(tiny_mnist, epochs=500), tmp_path, reporter)
    assert reporter.requested_at is not None
    latency = time.monotonic() - reporter.requested_at
    assert latency < 2.0, f"cancel took {latency:.2f}s after the request"
    gaps = [later - earlier for earlier, later in zip(reporter.polls, reporter.polls[1:], strict=False)]
    assert gaps and max(gaps) < 2.0, "the job polled for cancel less than once a second"


def test_early_stopping_stops_when_val_accuracy_stalls(tiny_mnist: Path, tmp_path: Path) -> None:
    # A vanishing learning rate: val_accuracy cannot improve after the first epoch.
    spec = mnist_spec(tiny_mnist, epochs=10, patience=2, optimizer="sgd", lr=1e-9, schedule="none")
    reporter = RecordingReporter()
    train_job(spec, tmp_path, reporter)
    summary = reporter.summary
    assert [row["epoch"] for row in reporter.history()] == [1, 2, 3]
    assert summary["stopped_early"] and summary["best_epoch"] == 3  # all tie: the latest is kept
    assert any("early stop" in line for line in reporter.lines)


def test_real_mnist_subset_trains(mnist_root: Path, tmp_path: Path) -> None:
    spec = mnist_spec(mnist_root, limit=2000, epochs=1)
    reporter = RecordingReporter()
    train_job(spec, tmp_path, reporter)
    assert reporter.history()[-1]["test_accuracy"] > 0.8


@pytest.mark.slow
def test_lenet_reaches_97_percent_on_real_mnist_in_one_epoch(mnist_root: Path, tmp_path: Path) -> None:
    spec = TrainSpec(model="lenet", dataset="mnist", data_root=mnist_root, epochs=1)
    reporter = RecordingReporter()
    train_job(spec, tmp_path, reporter)
    summary = reporter.summary
    assert summary["test_accuracy"] >= 0.97


def test_bf16_runs_where_the_cpu_computes_it_and_falls_back_with_a_log_line_elsewhere(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    from cnnq.jobs.device import cpu_has_native_bf16

    reporter = RecordingReporter()
    train_job(mnist_spec(tiny_mnist, epochs=1, precision="bf16"), tmp_path, reporter)
    [where] = [line for line in reporter.lines if line.startswith("training lenet on cpu")]
    if cpu_has_native_bf16():
        assert " in bf16" in where
    else:
        assert " in fp32" in where and any("running fp32" in line for line in reporter.lines)
    loss = reporter.history()[0]["train_loss"]
    assert 0.0 < loss < 10.0


def _gray_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 12) -> Path:
    """`train/<class>/` and `test/<class>/` of grayscale PNGs: a bright band whose row is the class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", per_class // 3)):
        for label in range(classes):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 60, (size, size), dtype=np.uint8)
                pixels[label * 3 : label * 3 + 3] = 220
                Image.fromarray(pixels, "L").save(folder / f"{index:03d}.png")
    return root


def test_a_folder_with_defaults_trains_at_its_own_shape_augmented_and_resumes_exactly(tmp_path: Path) -> None:
    """No size or channels given: the job reads them from the images, says so, records them, holds the
    set in memory, augments whole batches, and a run stopped mid-epoch ends as one never stopped."""
    spec = TrainSpec(
        model="mnist-cnn",
        dataset="folder",
        data_root=_gray_folder(tmp_path / "digits"),
        epochs=3,
        batch_size=8,
        num_workers=0,
        augment="rotation=10,shift=0.1,zoom=0.1,flip",
    )
    whole = RecordingReporter()
    train_job(spec, tmp_path / "whole", whole)
    summary = whole.summary
    assert summary["data"]["input"] == "1x12x12" and summary["data"]["held"] == "memory"
    assert any(line.startswith("channels: 1, from the data") for line in whole.lines)
    assert any(line.startswith("image size: 12x12, from the data") for line in whole.lines)
    assert any("weights for 1x12x12 inputs" in line for line in whole.lines)
    assert load_model_file(tmp_path / "whole" / "best.pt").info.image_size == 12

    stopper = StopAtCheck(at=8)  # 4 batches, a validation batch and the epoch's end make 6 per epoch
    with pytest.raises(JobInterrupted):
        train_job(spec, tmp_path / "split", stopper)
    saved = load_checkpoint(tmp_path / "split" / "last.pt")
    assert (saved["epoch"], saved["batches_done"]) == (1, 2)
    resumed = RecordingReporter()
    train_job(spec, tmp_path / "split", resumed)

    timing = {"images_per_second", "epoch_seconds"}
    strip = [{k: v for k, v in row.items() if k not in timing} for row in whole.history()]
    expected = [{k: pytest.approx(v, rel=1e-6) for k, v in row.items()} for row in strip[1:]]
    assert [{k: v for k, v in row.items() if k not in timing} for row in resumed.history()] == expected
    final_whole = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    final_split = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(final_whole[name], final_split[name]) for name in final_whole)


def test_a_checkpoint_resumes_after_an_upgrade_adds_an_option_not_under_another_spec(tmp_path: Path) -> None:
    from cnnq.jobs.train import spec_fingerprint, written_by

    spec = TrainSpec(model="lenet", dataset="mnist", data_root=tmp_path, epochs=2, lr=0.01)

    class Upgraded(TrainSpec):  # a later cnnq with one more option, left at its default
        new_option: int = 3

    upgraded = Upgraded(model="lenet", dataset="mnist", data_root=tmp_path, epochs=2, lr=0.01)
    assert written_by(spec_fingerprint(spec), upgraded)
    assert written_by(spec.model_dump_json(), spec), "a checkpoint in the earlier form still resumes"
    assert not written_by(spec_fingerprint(spec), spec.model_copy(update={"lr": 0.02}))
    assert not written_by(None, spec)


def test_a_small_image_cpu_job_trains_in_channels_last_unless_told_not_to(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    runs = {}
    for given in (None, False):
        reporter = RecordingReporter()
        train_job(mnist_spec(tiny_mnist, epochs=1, channels_last=given), tmp_path / str(given), reporter)
        [line] = [line for line in reporter.lines if line.startswith("training lenet on cpu")]
        runs[given] = (line, reporter.history()[0]["train_loss"])
    assert "in fp32, channels_last," in runs[None][0]
    assert "channels_last" not in runs[False][0]
    assert runs[None][1] == pytest.approx(runs[False][1], rel=0.02)  # the same math in another layout
    saved = torch.load(tmp_path / "None" / "best.pt", weights_only=True)["state_dict"]
    assert all(tensor.is_contiguous() for tensor in saved.values())  # the file holds the usual layout

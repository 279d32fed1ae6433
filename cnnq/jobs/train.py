"""The training job: a plain PyTorch loop with the reporter beside it.

Resumable: every epoch ends with `last.pt` (model, optimizer, scheduler, scaler, RNG states and the
early-stopping bookkeeping); a run that finds one carries on from the next epoch, and because the data
batches depend only on (seed, epoch), it ends with the same weights as a run never interrupted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnq.errors import UserError
from cnnq.jobs.checkpoint import (
    ModelInfo,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    save_model_file,
)
from cnnq.jobs.device import (
    PrecisionPlan,
    autocast,
    configure_cpu,
    pick_device,
    plan_precision,
    trains_channels_last,
)
from cnnq.jobs.hyperparameters import effective_hyperparameters
from cnnq.jobs.reporter import JobInterrupted, Reporter
from cnnq.jobs.spec import TrainSpec, data_request
from cnnq.jobs.training_curve import TrainingCurve
from cnnq.models.recipes import DEFAULT_LR, DEFAULT_WEIGHT_DECAY
from cnnq.outputs import CHECKPOINT_ARTIFACT, MODEL_ARTIFACT, positive_class

LAST = "last.pt"
BEST = "best.pt"

# Class weights only when the rarest class is this much rarer than the commonest.
IMBALANCE_RATIO = 1.5


def train_job(spec: TrainSpec, workdir: Path, reporter: Reporter) -> None:
    from cnnq.data.registry import load_dataset
    from cnnq.models.registry import build_model

    threads = configure_cpu()
    device = pick_device(spec.device)
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = load_dataset(data_request(spec), device)
    for note in _bundle_notes(bundle):
        reporter.log(note)

    seed_everything(spec.seed)
    model = build_model(
        spec.model,
        in_channels=bundle.in_channels,
        image_size=bundle.image_size,
        num_classes=len(bundle.classes),
        pretrained=spec.pretrained,
        weights=spec.weights,
        freeze_backbone=spec.freeze_backbone,
    ).to(device)
    channels_last = trains_channels_last(spec.channels_last, device, bundle.image_size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(spec, model)
    scheduler = make_scheduler(spec, optimizer, steps_per_epoch=len(bundle.train))
    hyperparameters = effective_hyperparameters(spec) | {"image_size": bundle.image_size}
    reporter.result({"hyperparameters": hyperparameters})  # the values used, shown while it runs
    plan = plan_precision(spec.precision, device)
    if plan.note:
        reporter.log(plan.note)
    layout = ", channels_last" if channels_last else ""
    weights_count = sum(p.numel() for p in model.parameters())
    reporter.log(
        f"training {spec.model} on {device} in {plan.name}{layout}, {threads} torch threads, "
        f"{weights_count:,} weights for {bundle.in_channels}x{bundle.image_size}x{bundle.image_size} inputs"
    )
    scaler = torch.amp.GradScaler(device.type, enabled=plan.scaled)
    weights = class_weights(bundle.class_counts) if spec.class_weights else None
    if weights is not None:
        reporter.log(
            f"imbalanced classes {bundle.class_counts}: loss weights {[round(w, 3) for w in weights]}"
        )
        weights = torch.tensor(weights, device=device)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=spec.label_smoothing)
    info = ModelInfo(
        model=spec.model,
        in_channels=bundle.in_channels,
        image_size=bundle.image_size,
        classes=list(bundle.classes),
        mean=tuple(bundle.mean),
        std=tuple(bundle.std),
        dataset=spec.dataset,
        data_root=str(spec.data_root),
        val_split=spec.val_split,
        seed=spec.seed,
        positive_class=positive_class(bundle.classes, dataset=spec.dataset),
    )

    progress = Progress(reporter, total_batches=spec.epochs * len(bundle.train))
    state = TrainState()
    last_path, best_path = workdir / LAST, workdir / BEST
    if last_path.exists():
        state = resume(last_path, spec, model, optimizer, scheduler, scaler, device)
        within = f", batch {state.batches_done} of epoch {state.epoch + 1}" if state.batches_done else ""
        reporter.log(f"resuming from {last_path} after epoch {state.epoch}{within}")
    progress.done = state.epoch * len(bundle.train) + state.batches_done
    curve = TrainingCurve(reporter)  # train loss and lr within epochs, every few seconds

    for epoch in range(state.epoch + 1, spec.epochs + 1):
        if state.stopped_early:
            break
        started = time.perf_counter()
        model.train()
        tally, batch = EpochTally(state.carried), state.batches_done  # both zero unless resumed mid-epoch
        try:
            for images, labels in bundle.train.batches(epoch, skip=batch):
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with autocast(device, plan):
                    outputs = model(images)
                    loss = criterion(outputs, labels)
                optimizer.zero_grad(set_to_none=True)
                if plan.scaled:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                scheduler.step()
                tally.add(loss, outputs, labels)
                batch += 1
                progress.batch(epoch)
                curve.batch(progress.done, loss, optimizer)
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_seconds = time.perf_counter() - started
            seen = tally.seen
            train_loss, train_accuracy = tally.result()
            val_loss, val_accuracy = evaluate_batches(
                model, bundle.val.batches(None), criterion, device, plan, reporter.check_stop
            )
        except JobInterrupted:
            # Its worker is stopping: keep the epoch so far, and the next worker carries on from this batch.
            stopped = replace(state, batches_done=batch, carried=tally.totals())
            save_checkpoint(
                last_path,
                checkpoint_state(spec, stopped, model, optimizer, scheduler, scaler),
                reporter.check_owner,
            )
            reporter.log(f"stopping in epoch {epoch} after batch {batch} of {len(bundle.train)}; saved")
            raise
        state.batches_done, state.carried = 0, (0.0, 0, 0)
        epoch_metrics = {
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_second": seen / train_seconds,
            "epoch_seconds": time.perf_counter() - started,
        }
        if not seen:  # resumed after its training pass: no images were trained here
            del epoch_metrics["images_per_second"]
        reporter.metrics(epoch, epoch_metrics)

        state.epoch = epoch
        improved = state.best_epoch == 0 or val_accuracy > state.best_val_accuracy
        state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1
        if improved or val_accuracy == state.best_val_accuracy:  # among equals, the later (more trained)
            state.best_val_accuracy = val_accuracy
            state.best_epoch = epoch
            reporter.artifact(MODEL_ARTIFACT, save_model_file(best_path, model, info, reporter.check_owner))
        state.stopped_early = spec.patience is not None and state.epochs_without_improvement >= spec.patience
        save_checkpoint(
            last_path,
            checkpoint_state(spec, state, model, optimizer, scheduler, scaler),
            reporter.check_owner,
        )
        reporter.artifact(CHECKPOINT_ARTIFACT, last_path)
        progress.epoch_done(epoch, epoch_metrics)
        if state.stopped_early:
            reporter.log(f"early stop after epoch {epoch}: no better val_accuracy for {spec.patience} epochs")

    finished = finish(spec, bundle, best_path, info, state, criterion, device, plan, reporter)
    reporter.result({"hyperparameters": hyperparameters, **finished})


class EpochTally:
    """Training loss and accuracy of an epoch, kept as the batches' own tensors and summed at its end:
    no extra kernel per batch beyond one argmax, and no device sync. `carried` holds the totals of the
    batches an interrupted run of this epoch already trained."""

    def __init__(self, carried: tuple[float, int, int] = (0.0, 0, 0)) -> None:
        self.carried = carried
        self.losses: list[torch.Tensor] = []
        self.predicted: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.seen = 0

    def add(self, loss: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.predicted.append(outputs.detach().argmax(1))
        self.labels.append(labels)
        self.seen += len(labels)

    def totals(self) -> tuple[float, int, int]:
        """(summed loss, correct, images), the carried batches included."""
        loss_sum, correct, seen = self.carried
        if self.seen:
            sizes = torch.tensor([len(labels) for labels in self.labels], device=self.losses[0].device)
            loss_sum += (torch.stack(self.losses).float() * sizes).sum().item()
            correct += int((torch.cat(self.predicted) == torch.cat(self.labels)).sum().item())
            seen += self.seen
        return loss_sum, correct, seen

    def result(self) -> tuple[float, float]:
        """(mean loss per image, accuracy); NaN for an epoch without batches."""
        loss_sum, correct, seen = self.totals()
        if not seen:
            return float("nan"), float("nan")
        return loss_sum / seen, correct / seen


@dataclass
class TrainState:
    """Where a run is: the last finished epoch and the early-stopping bookkeeping."""

    epoch: int = 0
    best_val_accuracy: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    batches_done: int = 0
    """Batches of the next epoch already trained (a run stopped mid-epoch by its worker)."""
    carried: tuple[float, int, int] = (0.0, 0, 0)
    """Those batches' `EpochTally.totals()`."""


class Progress:
    """Batches trained so far, told to the reporter with the cancel check after every batch (the
    reporter throttles both: `cnnq.jobs.reporter`)."""

    def __init__(self, reporter: Reporter, total_batches: int) -> None:
        self.reporter = reporter
        self.total = max(total_batches, 1)
        self.done = 0

    def batch(self, epoch: int) -> None:
        self.done += 1
        self.reporter.check_stop()
        self.reporter.progress(self.done / self.total, f"epoch {epoch}")

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        self.reporter.progress(
            self.done / self.total,
            f"epoch {epoch}: val_accuracy {metrics['val_accuracy']:.4f}, val_loss {metrics['val_loss']:.4f}",
        )
        self.reporter.check_stop()


def _bundle_notes(bundle: Any) -> list[str]:
    notes = [str(n) for n in getattr(bundle, "notes", None) or []]
    for path, reason in getattr(bundle, "skipped", None) or []:
        notes.append(f"skipped {path}: {reason}")
    return notes


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_lr(optimizer: str) -> float:
    return DEFAULT_LR[optimizer]


def make_optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    """The spec's optimizer, fused: one pass over each parameter per step instead of one per operation
    (nets with big fully connected heads gain most: AlexNet and VGG-11 at 64 px train 1.5-1.7x as
    fast on the CPU; `benchmarks/cpu_training_step.py`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr = spec.lr or default_lr(spec.optimizer)
    decay = DEFAULT_WEIGHT_DECAY[spec.optimizer] if spec.weight_decay is None else spec.weight_decay
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=decay, fused=True)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay, fused=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=decay, fused=True)


def make_scheduler(
    spec: TrainSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per batch, whatever the schedule."""
    total = max(spec.epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler
    if spec.schedule == "onecycle":
        lr = spec.lr or default_lr(spec.optimizer)
        # SGD: momentum falls to 0.85 while the lr peaks and climbs back to --momentum (Smith 2018).
        return sched.OneCycleLR(
            optimizer,
            max_lr=lr,
            total_steps=total,
            cycle_momentum=spec.optimizer == "sgd",
            base_momentum=min(0.85, spec.momentum),
            max_momentum=spec.momentum,
        )
    if spec.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total)
    if spec.schedule == "step":
        # Divide the lr by 10 at one third and two thirds of the run.
        return sched.StepLR(optimizer, step_size=max(total // 3, 1), gamma=0.1)
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)


def class_weights(counts: list[int]) -> list[float] | None:
    """Inverse-frequency weights (mean 1) when the set is imbalanced, else None."""
    present = [c for c in counts if c > 0]
    if len(present) < 2 or max(present) / min(present) < IMBALANCE_RATIO:
        return None
    total = sum(counts)
    return [total / (len(counts) * c) if c > 0 else 0.0 for c in counts]


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    batches: Any,
    criterion: nn.Module,
    device: torch.device,
    plan: PrecisionPlan,
    on_batch: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy over batches, accumulated on the device (one sync at the end)."""
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for images, labels in batches:
        with autocast(device, plan):
            outputs = model(images)
            loss = criterion(outputs, labels)
        total_loss += loss.float() * len(labels)
        correct += (outputs.argmax(1) == labels).sum()
        seen += len(labels)
        if on_batch is not None:
            on_batch()
    if seen == 0:
        return float("nan"), float("nan")
    return total_loss.item() / seen, correct.item() / seen


@torch.no_grad()
def positive_scores(
    model: nn.Module, batches: Any, positive_index: int, device: torch.device, plan: PrecisionPlan
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probability of the positive class) over batches, as numpy arrays."""
    model.eval()
    labels_out, scores_out = [], []
    for images, labels in batches:
        with autocast(device, plan):
            outputs = model(images)
        scores_out.append(torch.softmax(outputs.float(), dim=1)[:, positive_index])
        labels_out.append(labels)
    if not labels_out:
        return np.zeros(0, dtype=int), np.zeros(0)
    return torch.cat(labels_out).cpu().numpy(), torch.cat(scores_out).cpu().numpy()


def spec_fingerprint(spec: TrainSpec) -> str:
    """What a checkpoint must have been written by to be resumed: the spec's options that differ from
    their defaults, so that a job resumes after an upgrade of cnnq that adds an option."""
    return spec.model_dump_json(exclude_defaults=True)


def written_by(fingerprint: object, spec: TrainSpec) -> bool:
    """Whether a checkpoint's fingerprint is this spec's (or its whole dump: how checkpoints written
    before 2026-12 named their spec)."""
    return fingerprint in (spec_fingerprint(spec), spec.model_dump_json())


def checkpoint_state(
    spec: TrainSpec,
    state: TrainState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
) -> dict[str, Any]:
    return {
        "spec": spec_fingerprint(spec),
        "epoch": state.epoch,
        "best_val_accuracy": state.best_val_accuracy,
        "best_epoch": state.best_epoch,
        "epochs_without_improvement": state.epochs_without_improvement,
        "stopped_early": state.stopped_early,
        "batches_done": state.batches_done,
        "carried": list(state.carried),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_states(),
    }


def resume(
    path: Path,
    spec: TrainSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> TrainState:
    saved = load_checkpoint(path, device)
    if not written_by(saved.get("spec"), spec):
        raise UserError(f"{path} was written by a different training spec; remove it or use a new job")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    restore_rng_states(saved["rng"])
    carried = saved.get("carried", (0.0, 0, 0))
    return TrainState(
        epoch=int(saved["epoch"]),
        best_val_accuracy=float(saved["best_val_accuracy"]),
        best_epoch=int(saved["best_epoch"]),
        epochs_without_improvement=int(saved["epochs_without_improvement"]),
        stopped_early=bool(saved["stopped_early"]),
        batches_done=int(saved.get("batches_done", 0)),
        carried=(float(carried[0]), int(carried[1]), int(carried[2])),
    )


def finish(
    spec: TrainSpec,
    bundle: Any,
    best_path: Path,
    info: ModelInfo,
    state: TrainState,
    criterion: nn.Module,
    device: torch.device,
    plan: PrecisionPlan,
    reporter: Reporter,
) -> dict[str, Any]:
    """Test the best model, pick its decision threshold, and say what the run achieved."""
    from cnnq.jobs.checkpoint import load_model_file

    best = load_model_file(best_path, device)
    summary: dict[str, Any] = {
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_accuracy": state.best_val_accuracy,
        "stopped_early": state.stopped_early,
        "model_file": str(best_path),
        "data": bundle.summary(),
    }
    if bundle.test is not None:
        reporter.progress(1.0, "testing the best model")
        test_loss, test_accuracy = evaluate_batches(
            best.model, bundle.test.batches(None), criterion, device, plan, reporter.check_stop
        )
        reporter.metrics(state.epoch, {"test_loss": test_loss, "test_accuracy": test_accuracy})
        summary |= {"test_loss": test_loss, "test_accuracy": test_accuracy}
    else:
        reporter.log(f"{spec.dataset} has no test split: no test_accuracy")

    wants_threshold = spec.threshold is not None or spec.target_sensitivity is not None
    if info.positive_class is not None and wants_threshold:
        from cnnq.jobs.thresholds import pick_threshold

        positive_index = info.classes.index(info.positive_class)
        labels, scores = positive_scores(best.model, bundle.val.batches(None), positive_index, device, plan)
        threshold = pick_threshold(
            (labels == positive_index).astype(int).tolist(),
            scores.tolist(),
            method="youden" if spec.threshold is None else spec.threshold,
            target_sensitivity=spec.target_sensitivity,
        )
        reporter.log(f"decision threshold for {info.positive_class}: {threshold:.4f} (on the validation set)")
        best_info = ModelInfo.from_dict(best.info.as_dict() | {"threshold": threshold})
        reporter.artifact(
            MODEL_ARTIFACT, save_model_file(best_path, best.model, best_info, reporter.check_owner)
        )
        summary["threshold"] = threshold
    elif wants_threshold:
        reporter.log(f"--threshold ignored: {len(info.classes)} classes, thresholds are for two")
    from cnnq.jobs.onnx_engine import quantize_trained

    try:  # once, for every job that will score with it in int8 (`cnnq.jobs.int8_engine`)
        images = (batch for split in (bundle.val, bundle.train) for batch in split.batches(None))
        reporter.log(quantize_trained(best_path, images, torch.get_num_threads()))
    except Exception as error:
        reporter.log(f"int8: not quantized ({type(error).__name__}: {error}); its first int8 job will")
    reporter.progress(1.0, "done")
    return summary

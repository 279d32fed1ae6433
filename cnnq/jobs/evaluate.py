"""The evaluation job: a trained model on a dataset split, with the metrics a reader of a model asks for.

Accuracy, per-class precision/recall/F1 and the confusion matrix for any number of classes; for two
classes also ROC AUC and sensitivity/specificity at a decision threshold, with the ROC curve kept for
plotting. The numbers come from scikit-learn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from cnnq.errors import UserError
from cnnq.jobs.checkpoint import LoadedModel
from cnnq.jobs.device import configure_cpu, pick_device
from cnnq.jobs.model_cache import cached_model
from cnnq.jobs.reporter import Reporter
from cnnq.jobs.spec import EvalSpec
from cnnq.outputs import REPORT_ARTIFACT, positive_class

REPORT = "report.json"
ROC_POINTS = 200
DEFAULT_THRESHOLD = 0.5
AUC_RESAMPLES = 1000
AUC_SEED = 0


def evaluate_job(spec: EvalSpec, workdir: Path, reporter: Reporter) -> None:
    from cnnq.data.registry import load_dataset

    configure_cpu()
    device = pick_device(spec.device)
    workdir.mkdir(parents=True, exist_ok=True)
    loaded = cached_model(spec.model_file, device, spec.model_file_sha256)
    request = data_request(spec, loaded)
    reporter.progress(0.0, f"loading {request.dataset}")
    bundle = load_dataset(request, device)
    if list(bundle.classes) != loaded.info.classes:
        raise UserError(
            f"the model knows classes {loaded.info.classes} but {request.dataset} has "
            f"{list(bundle.classes)}; evaluate it on the dataset it was trained on"
        )
    source = {"train": bundle.train, "val": bundle.val, "test": bundle.test}[spec.split]
    if source is None:
        raise UserError(f"{request.dataset} has no {spec.split} split; use --split val")

    reporter.progress(0.05, f"scoring the {spec.split} split")
    labels, probabilities = predict(loaded, source, reporter)
    classes = loaded.info.classes
    threshold: float | None = None
    positive = positive_class(classes, loaded.info.positive_class)
    if positive is not None:
        threshold = choose_threshold(spec, loaded, bundle, positive, reporter)
        predicted = np.where(
            probabilities[:, classes.index(positive)] >= threshold,
            classes.index(positive),
            1 - classes.index(positive),
        )
    else:
        predicted = probabilities.argmax(axis=1)

    report = classification_report(labels, predicted, probabilities, classes, positive, threshold)
    report |= {"split": spec.split, "num_samples": len(labels), "model_from": spec.model_from}
    reporter.metrics(0, report["metrics"])
    path = workdir / REPORT
    path.write_text(json.dumps(report, indent=2))
    reporter.artifact(REPORT_ARTIFACT, path)
    reporter.result({k: v for k, v in report.items() if k != "metrics"})
    reporter.progress(1.0, f"accuracy {report['metrics']['accuracy']:.4f} on {len(labels)} images")


def data_request(spec: EvalSpec, loaded: LoadedModel) -> Any:
    from cnnq.data.registry import DataRequest

    dataset = spec.dataset or loaded.info.dataset
    root = spec.data_root or loaded.info.data_root
    if dataset is None or root is None:
        raise UserError(
            f"{spec.model_file}: does not say which dataset it was trained on; give --dataset and --data-root"
        )
    return DataRequest(
        dataset=dataset,
        root=Path(root),
        image_size=spec.image_size or loaded.info.image_size,
        val_split=loaded.info.val_split,
        limit=spec.limit,
        batch_size=spec.batch_size,
        num_workers=spec.num_workers,
        seed=loaded.info.seed,
        channels=loaded.info.in_channels,
        mean=loaded.info.mean,
        std=loaded.info.std,
    )


@torch.no_grad()
def predict(loaded: LoadedModel, source: Any, reporter: Reporter) -> tuple[np.ndarray, np.ndarray]:
    """(labels, class probabilities) over a split, in order."""
    labels_out, probabilities_out = [], []
    total = max(len(source), 1)
    for index, (images, labels) in enumerate(source.batches(None)):
        probabilities_out.append(torch.softmax(loaded.model(images).float(), dim=1))
        labels_out.append(labels)
        reporter.check_stop()
        reporter.progress(0.05 + 0.9 * (index + 1) / total)
    if not labels_out:
        raise UserError("the split has no images; check --limit and the dataset")
    return torch.cat(labels_out).cpu().numpy(), torch.cat(probabilities_out).cpu().numpy()


def choose_threshold(
    spec: EvalSpec, loaded: LoadedModel, bundle: Any, positive: str, reporter: Reporter
) -> float:
    """The spec's threshold (picked on the validation split), else the model's, else 0.5."""
    if spec.threshold is None and spec.target_sensitivity is None:
        return loaded.info.threshold if loaded.info.threshold is not None else DEFAULT_THRESHOLD
    from cnnq.jobs.thresholds import pick_threshold

    positive_index = loaded.info.classes.index(positive)
    labels, probabilities = predict(loaded, bundle.val, reporter)
    threshold = pick_threshold(
        (labels == positive_index).astype(int).tolist(),
        probabilities[:, positive_index].tolist(),
        method="youden" if spec.threshold is None else spec.threshold,
        target_sensitivity=spec.target_sensitivity,
    )
    reporter.log(f"decision threshold for {positive}: {threshold:.4f} (picked on the validation split)")
    return threshold


def classification_report(
    labels: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    positive: str | None,
    threshold: float | None,
) -> dict[str, Any]:
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0
    )
    matrix = confusion_matrix(labels, predicted, labels=indices)
    per_class = [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]
    metrics: dict[str, float] = {"accuracy": float(accuracy_score(labels, predicted))}
    report: dict[str, Any] = {
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class,
        "threshold": threshold,
        "positive_class": positive,
    }
    if positive is None:
        metrics |= {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        }
    else:
        p = classes.index(positive)
        n = 1 - p
        is_positive = (labels == p).astype(int)
        scores = probabilities[:, p]
        metrics |= {
            "precision": float(precision[p]),
            "recall": float(recall[p]),
            "f1": float(f1[p]),
            "sensitivity": float(recall[p]),
            "specificity": float(recall[n]),
            "threshold": float(threshold if threshold is not None else DEFAULT_THRESHOLD),
        }
        if len(np.unique(is_positive)) == 2:
            metrics["roc_auc"] = float(roc_auc_score(is_positive, scores))
            report["roc_auc_interval"] = auc_bootstrap_interval(is_positive, scores)
            fpr, tpr, thresholds = roc_curve(is_positive, scores)
            report["roc"] = roc_points(fpr, tpr, thresholds)
        else:
            report["roc"] = None
    report["metrics"] = metrics
    return report


def roc_points(
    fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, limit: int = ROC_POINTS
) -> dict[str, list]:
    """The ROC curve, thinned evenly to at most `limit` points (the ends kept); inf thresholds as None."""
    if len(fpr) > limit:
        keep = np.unique(np.linspace(0, len(fpr) - 1, limit).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    return {
        "fpr": [float(v) for v in fpr],
        "tpr": [float(v) for v in tpr],
        "thresholds": [float(v) if np.isfinite(v) else None for v in thresholds],
    }


def auc_bootstrap_interval(
    is_positive: np.ndarray,
    scores: np.ndarray,
    resamples: int = AUC_RESAMPLES,
    seed: int = AUC_SEED,
    level: float = 0.95,
) -> dict[str, Any]:
    """The ROC AUC's percentile bootstrap interval: `resamples` stratified resamples (positives and
    negatives each drawn with replacement to their own count), with a fixed seed so the same scores give
    the same interval. Each resample's AUC is roc_auc_score's (the Mann-Whitney statistic, ties counted
    half) with the resample's draw counts as weights, computed for all resamples at once from the sorted
    negative scores: 1,000 resamples of 1,000 images take a few tens of milliseconds."""
    positive_scores = np.asarray(scores, dtype=float)[np.asarray(is_positive) == 1]
    negative_scores = np.sort(np.asarray(scores, dtype=float)[np.asarray(is_positive) == 0])
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    below = np.searchsorted(negative_scores, positive_scores, side="left")
    not_above = np.searchsorted(negative_scores, positive_scores, side="right")
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // (n_pos + n_neg + 1))  # resamples at a time: memory stays ~100 MB
    aucs = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        negative_draws = rng.multinomial(n_neg, np.full(n_neg, 1.0 / n_neg), size=size)
        cumulative = np.zeros((size, n_neg + 1))
        np.cumsum(negative_draws, axis=1, out=cumulative[:, 1:])
        # For each positive: the drawn negatives scored below it, plus half of those tied with it.
        wins = (cumulative[:, below] + cumulative[:, not_above]) / 2
        positive_draws = rng.multinomial(n_pos, np.full(n_pos, 1.0 / n_pos), size=size)
        aucs.append((positive_draws * wins).sum(axis=1) / (n_pos * n_neg))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.concatenate(aucs), [tail, 100 - tail])
    return {
        "low": float(low),
        "high": float(high),
        "level": level,
        "method": "percentile bootstrap",
        "resamples": resamples,
        "seed": seed,
    }

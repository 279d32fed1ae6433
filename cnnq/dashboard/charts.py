"""Plotly figures of the dashboard, built from the frames of `cnnq.dashboard.queries`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 320}


def _curves(history: pd.DataFrame, title: str, series: Sequence[tuple[str, str]], y_title: str) -> go.Figure:
    figure = go.Figure()
    for column, name in series:
        if column in history.columns and history[column].notna().any():
            figure.add_trace(
                go.Scatter(x=history["epoch"], y=history[column], mode="lines+markers", name=name)
            )
    figure.update_layout(title=title, xaxis_title="epoch", yaxis_title=y_title, **_LAYOUT)
    _whole_epochs(figure, history)
    return figure


def _whole_epochs(figure: go.Figure, frame: pd.DataFrame) -> None:
    """Tick every epoch while there are few (plotly would otherwise show 1.5)."""
    if not frame.empty and frame["epoch"].max() <= 20:
        figure.update_xaxes(dtick=1)


def loss_figure(history: pd.DataFrame) -> go.Figure:
    return _curves(history, "Loss", [("train_loss", "train"), ("val_loss", "validation")], "loss")


def accuracy_figure(history: pd.DataFrame) -> go.Figure:
    return _curves(
        history, "Accuracy", [("train_accuracy", "train"), ("val_accuracy", "validation")], "accuracy"
    )


def lr_figure(history: pd.DataFrame) -> go.Figure:
    return _curves(history, "Learning rate", [("lr", "lr")], "learning rate")


def throughput_figure(history: pd.DataFrame) -> go.Figure:
    return _curves(history, "Images per second", [("images_per_second", "train")], "images / s")


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> go.Figure:
    labels = [str(c) for c in classes]
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            colorscale="Blues",
            text=matrix,
            texttemplate="%{text}",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z}<extra></extra>",
        )
    )
    figure.update_layout(
        title="Confusion matrix",
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        **{**_LAYOUT, "height": max(320, 40 * len(labels) + 120)},
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


def roc_figure(
    roc: dict[str, Sequence[float | None]], threshold: float | None, auc: float | None
) -> go.Figure:
    """The ROC curve, with the operating point of the chosen threshold marked."""
    fpr, tpr = list(roc["fpr"]), list(roc["tpr"])
    # The first ROC threshold is infinite, which JSON stores as null.
    thresholds = [math.inf if t is None else t for t in roc.get("thresholds", [])]
    title = "ROC curve" + (f" (AUC {auc:.3f})" if auc is not None else "")
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC"))
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"})
    )
    if threshold is not None and thresholds:
        # The operating point: the last ROC point whose threshold is still >= the chosen one.
        index = max((i for i, t in enumerate(thresholds) if t >= threshold), default=0)
        figure.add_trace(
            go.Scatter(
                x=[fpr[index]],
                y=[tpr[index]],
                mode="markers+text",
                name=f"threshold {threshold:.3f}",
                text=[f"threshold {threshold:.3f}"],
                textposition="bottom right",
                marker={"size": 12, "color": "crimson", "symbol": "x"},
            )
        )
    figure.update_layout(
        title=title, xaxis_title="false positive rate", yaxis_title="true positive rate", **_LAYOUT
    )
    figure.update_xaxes(range=[0, 1])
    figure.update_yaxes(range=[0, 1.02])
    return figure


def score_histogram(scores: pd.Series, threshold: float | None, positive_class: str | None) -> go.Figure:
    figure = go.Figure(go.Histogram(x=scores, nbinsx=40, name="inputs"))
    if threshold is not None:
        figure.add_vline(
            x=threshold,
            line={"color": "crimson", "dash": "dash"},
            annotation_text=f"threshold {threshold:.3f}",
        )
    label = f"score (probability of {positive_class})" if positive_class else "score"
    figure.update_layout(title="Distribution of scores", xaxis_title=label, yaxis_title="inputs", **_LAYOUT)
    return figure


def shard_progress_figure(shards: pd.DataFrame) -> go.Figure:
    colors = {
        "SUCCEEDED": "seagreen",
        "RUNNING": "royalblue",
        "QUEUED": "lightgray",
        "FAILED": "crimson",
        "CANCELLED": "darkorange",
    }
    figure = go.Figure(
        go.Bar(
            x=shards["progress"] * 100,
            y=shards["shard"],
            orientation="h",
            marker={"color": [colors.get(s, "gray") for s in shards["status"]]},
            text=shards["status"],
            textposition="auto",
        )
    )
    figure.update_layout(
        title="Progress by shard",
        xaxis_title="% done",
        **{**_LAYOUT, "height": max(200, 28 * len(shards) + 100)},
    )
    figure.update_xaxes(range=[0, 100])
    figure.update_yaxes(autorange="reversed")
    return figure


def compare_figure(curves: pd.DataFrame, metric: str, title: str) -> go.Figure:
    """One metric of several jobs overlaid, one line per job."""
    figure = go.Figure()
    if metric in curves.columns:
        for job_id, frame in curves.groupby("job", sort=False):
            figure.add_trace(go.Scatter(x=frame["epoch"], y=frame[metric], mode="lines+markers", name=job_id))
    figure.update_layout(title=title, xaxis_title="epoch", yaxis_title=metric, **_LAYOUT)
    _whole_epochs(figure, curves)
    return figure

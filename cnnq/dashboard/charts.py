"""Plotly figures of the dashboard, built from the frames of `cnnq.dashboard.queries`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from cnnq.dashboard.status_colors import STATUS_COLORS

_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 320}


def _curves(
    history: pd.DataFrame,
    title: str,
    series: Sequence[tuple[str, str]],
    y_title: str,
    best_epoch: int | None = None,
) -> go.Figure:
    figure = go.Figure()
    for column, name in series:
        if column in history.columns and history[column].notna().any():
            figure.add_trace(
                go.Scatter(x=history["epoch"], y=history[column], mode="lines+markers", name=name)
            )
    figure.update_layout(title=title, xaxis_title="epoch", yaxis_title=y_title, **_LAYOUT)
    _whole_epochs(figure, history)
    if best_epoch is not None:
        figure.add_vline(
            x=best_epoch,
            line={"color": "seagreen", "dash": "dot"},
            annotation_text=f"best epoch {best_epoch}",
            annotation_position="top left",
        )
    return figure


def _whole_epochs(figure: go.Figure, frame: pd.DataFrame) -> None:
    """Tick every epoch while there are few (plotly would otherwise show 1.5); one epoch sits in the
    middle of a one-epoch-wide axis rather than on plotly's default -1..1."""
    if frame.empty:
        return
    if frame["epoch"].max() <= 20:
        figure.update_xaxes(dtick=1)
    if frame["epoch"].nunique() == 1:
        epoch = float(frame["epoch"].iloc[0])
        figure.update_xaxes(range=[epoch - 1, epoch + 1])


def loss_figure(history: pd.DataFrame, best_epoch: int | None = None) -> go.Figure:
    return _curves(history, "Loss", [("train_loss", "train"), ("val_loss", "validation")], "loss", best_epoch)


def accuracy_figure(history: pd.DataFrame, best_epoch: int | None = None) -> go.Figure:
    return _curves(
        history,
        "Accuracy",
        [("train_accuracy", "train"), ("val_accuracy", "validation")],
        "accuracy",
        best_epoch,
    )


def lr_figure(history: pd.DataFrame) -> go.Figure:
    figure = _curves(history, "Learning rate", [("lr", "lr")], "learning rate")
    figure.update_yaxes(tickformat=".1e", rangemode="tozero")  # "800μ" reads as nothing to most
    if "lr" in history.columns and history["lr"].notna().sum() == 1:
        figure.update_yaxes(range=[0, float(history["lr"].dropna().iloc[0]) * 2])
    return figure


def throughput_figure(history: pd.DataFrame) -> go.Figure:
    return _curves(history, "Images per second", [("images_per_second", "train")], "images / s")


def smoothed(values: pd.Series, smoothing: float) -> pd.Series:
    """An exponential moving average, as TensorBoard smooths: 0 keeps the values, 0.99 flattens them."""
    return values.ewm(alpha=1.0 - min(max(smoothing, 0.0), 0.999), adjust=True).mean()


def curve_figure(points: pd.DataFrame, x: str, smoothing: float) -> go.Figure:
    """Train loss within epochs (each point, faint, and smoothed) with the learning rate on a second axis;
    `x` is `step` (batches trained) or `time` (wall clock)."""
    figure = go.Figure()
    if "train_loss" in points.columns:
        loss = points.dropna(subset=["train_loss"])
        figure.add_trace(
            go.Scatter(
                x=loss[x],
                y=loss["train_loss"],
                mode="lines",
                name="train loss",
                opacity=0.3,
                line={"width": 1},
            )
        )
        figure.add_trace(
            go.Scatter(x=loss[x], y=smoothed(loss["train_loss"], smoothing), mode="lines", name="smoothed")
        )
    if "lr" in points.columns:
        figure.add_trace(
            go.Scatter(
                x=points[x],
                y=points["lr"],
                mode="lines",
                name="learning rate",
                yaxis="y2",
                line={"dash": "dot"},
            )
        )
    figure.update_layout(
        title="Within epochs",
        xaxis_title="batches trained" if x == "step" else "time",
        yaxis_title="train loss",
        yaxis2={
            "title": "learning rate",
            "overlaying": "y",
            "side": "right",
            "tickformat": ".1e",
            "rangemode": "tozero",
        },
        **_LAYOUT,
    )
    return figure


def confusion_figure(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], normalised: bool = False
) -> go.Figure:
    """Counts, or (normalised) each true class's row as fractions: its recall on the diagonal."""
    labels = [str(c) for c in classes]
    shown: list[list[float]] = [[float(v) for v in row] for row in matrix]
    text = [[str(v) for v in row] for row in matrix]
    if normalised:
        shown = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in shown]
        text = [[f"{v:.2f}" for v in row] for row in shown]
    figure = go.Figure(
        go.Heatmap(
            z=shown,
            x=labels,
            y=labels,
            colorscale="Blues",
            text=text,
            texttemplate="%{text}",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
            zmin=0.0 if normalised else None,
            zmax=1.0 if normalised else None,
        )
    )
    figure.update_layout(
        title="Confusion matrix" + (" (fraction of each true class)" if normalised else ""),
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        **{**_LAYOUT, "height": max(320, 40 * len(labels) + 120)},
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure


def precision_recall_figure(
    recall: Sequence[float], precision: Sequence[float], at_recall: float, at_precision: float
) -> go.Figure:
    figure = go.Figure(go.Scatter(x=list(recall), y=list(precision), mode="lines", name="precision-recall"))
    if not (math.isnan(at_recall) or math.isnan(at_precision)):
        figure.add_trace(
            go.Scatter(
                x=[at_recall],
                y=[at_precision],
                mode="markers",
                name="chosen threshold",
                marker={"size": 12, "color": "crimson", "symbol": "x"},
            )
        )
    figure.update_layout(
        title="Precision-recall curve",
        xaxis_title="recall (sensitivity)",
        yaxis_title="precision (PPV)",
        **_LAYOUT,
    )
    figure.update_xaxes(range=[0, 1])
    figure.update_yaxes(range=[0, 1.02])
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


def score_histogram(bins: pd.DataFrame, threshold: float | None, positive_class: str | None) -> go.Figure:
    """Counts of scores per bin (`cnnq.dashboard.review.score_bins`: `start`, `count`), binned in SQL."""
    width = float(bins["start"].iloc[1] - bins["start"].iloc[0]) if len(bins) > 1 else 1.0
    figure = go.Figure(
        go.Bar(x=bins["start"] + width / 2, y=bins["count"], width=width, name="inputs", marker_line_width=0)
    )
    if threshold is not None:
        figure.add_vline(
            x=threshold,
            line={"color": "crimson", "dash": "dash"},
            annotation_text=f"threshold {threshold:.3f}",
        )
    label = f"score (probability of {positive_class})" if positive_class else "score"
    figure.update_layout(
        title="Distribution of scores", xaxis_title=label, yaxis_title="inputs", bargap=0, **_LAYOUT
    )
    figure.update_xaxes(range=[0, 1])
    return figure


def shard_progress_figure(shards: pd.DataFrame) -> go.Figure:
    figure = go.Figure(
        go.Bar(
            x=shards["progress"] * 100,
            y=shards["shard"],
            orientation="h",
            marker={"color": [STATUS_COLORS.get(s, "gray") for s in shards["status"]]},
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


RUN_COLORS = qualitative.Dark24
"""One distinct colour per compared run (24 before they repeat)."""


def compare_figure(curves: pd.DataFrame, metric: str, title: str) -> go.Figure:
    """One metric of several jobs overlaid, one line per job, each in its own colour."""
    figure = go.Figure()
    if metric in curves.columns:
        for index, (job_id, frame) in enumerate(curves.groupby("job", sort=False)):
            color = RUN_COLORS[index % len(RUN_COLORS)]
            figure.add_trace(
                go.Scatter(
                    x=frame["epoch"],
                    y=frame[metric],
                    mode="lines+markers",
                    name=job_id,
                    line={"color": color},
                )
            )
    figure.update_layout(title=title, xaxis_title="epoch", yaxis_title=metric, **_LAYOUT)
    _whole_epochs(figure, curves)
    if "accuracy" in metric:
        figure.update_yaxes(range=[0, 1.02])
    return figure


def parameter_figure(summary: pd.DataFrame, parameter: str, metric: str) -> go.Figure:
    """Each compared run as a point: a hyperparameter against a metric."""
    figure = go.Figure()
    for index, values in enumerate(summary.to_dict("records")):
        figure.add_trace(
            go.Scatter(
                x=[values.get(parameter)],
                y=[values.get(metric)],
                mode="markers",
                name=str(values.get("job")),
                marker={"size": 12, "color": RUN_COLORS[index % len(RUN_COLORS)]},
            )
        )
    figure.update_layout(
        title=f"{metric} against {parameter}", xaxis_title=parameter, yaxis_title=metric, **_LAYOUT
    )
    return figure

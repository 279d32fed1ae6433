"""Plotly figures of the dashboard, built from the frames of `cnnq.dashboard.queries`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cnnq.dashboard.status_colors import STATUS_COLORS

_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 320}


EPOCH_PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Loss", "loss", (("train_loss", "train loss"), ("val_loss", "validation loss"))),
    ("Accuracy", "accuracy", (("train_accuracy", "train accuracy"), ("val_accuracy", "validation accuracy"))),
    ("Learning rate", "learning rate", (("lr", "learning rate"),)),
    ("Images per second", "images / s", (("images_per_second", "images per second"),)),
)
"""The training page's per-epoch panels: title, y axis, and (history column, trace name) of each curve."""


def training_figure(history: pd.DataFrame, best_epoch: int | None = None) -> go.Figure:
    """Loss, accuracy, learning rate and images/s by epoch as one figure of 2x2 panels, not four charts
    (the browser draws each plotly chart on its own, the costliest part of a first render); the best
    epoch marked on loss and accuracy."""
    figure = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[title for title, _, _ in EPOCH_PANELS],
        horizontal_spacing=0.1,
        vertical_spacing=0.16,
    )
    for index, (_, y_title, series) in enumerate(EPOCH_PANELS):
        row, col = index // 2 + 1, index % 2 + 1
        for column, name in series:
            if column in history.columns and history[column].notna().any():
                figure.add_trace(
                    go.Scatter(x=history["epoch"], y=history[column], mode="lines+markers", name=name),
                    row=row,
                    col=col,
                )
        figure.update_yaxes(title_text=y_title, row=row, col=col)
        figure.update_xaxes(title_text="epoch" if row == 2 else None, row=row, col=col)
        if best_epoch is not None and row == 1:
            figure.add_vline(
                x=best_epoch,
                line={"color": "seagreen", "dash": "dot"},
                annotation_text=f"best epoch {best_epoch}",
                annotation_position="top left",
                row=row,
                col=col,
            )
    figure.update_layout(title="Training by epoch", **{**_LAYOUT, "height": 560})
    _whole_epochs(figure, history)
    figure.update_yaxes(tickformat=".1e", rangemode="tozero", row=2, col=1)  # "800μ" reads as nothing
    if "lr" in history.columns and history["lr"].notna().sum() == 1:
        figure.update_yaxes(range=[0, float(history["lr"].dropna().iloc[0]) * 2], row=2, col=1)
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


def _roc_traces(
    roc: dict[str, Sequence[float | None]], threshold: float | None, point: tuple[float, float] | None
) -> list[go.Scatter]:
    """The ROC curve and chance line, with the operating point of the chosen threshold marked: `point`
    (false positive rate, sensitivity) when the page worked it out, else the stored curve's point."""
    fpr, tpr = list(roc["fpr"]), list(roc["tpr"])
    # The first ROC threshold is infinite, which JSON stores as null.
    thresholds = [math.inf if t is None else t for t in roc.get("thresholds", [])]
    traces = [
        go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC"),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "gray"}),
    ]
    if point is None and threshold is not None and thresholds:
        # The last ROC point whose threshold is still >= the chosen one.
        index = max((i for i, t in enumerate(thresholds) if t >= threshold), default=0)
        point = (float(fpr[index] or 0.0), float(tpr[index] or 0.0))
    if threshold is not None and point is not None:
        traces.append(
            go.Scatter(
                x=[point[0]],
                y=[point[1]],
                mode="markers+text",
                name=f"threshold {threshold:.3f}",
                text=[f"threshold {threshold:.3f}"],
                textposition="bottom right",
                marker={"size": 12, "color": "crimson", "symbol": "x"},
            )
        )
    return traces


def _precision_recall_traces(
    recall: Sequence[float], precision: Sequence[float], at_recall: float, at_precision: float
) -> list[go.Scatter]:
    traces = [go.Scatter(x=list(recall), y=list(precision), mode="lines", name="precision-recall")]
    if not (math.isnan(at_recall) or math.isnan(at_precision)):
        traces.append(
            go.Scatter(
                x=[at_recall],
                y=[at_precision],
                mode="markers",
                name="chosen threshold",
                marker={"size": 12, "color": "crimson", "symbol": "x"},
            )
        )
    return traces


def roc_figure(
    roc: dict[str, Sequence[float | None]],
    threshold: float | None,
    auc: float | None,
    precision_recall: tuple[Sequence[float], Sequence[float], float, float] | None = None,
    point: tuple[float, float] | None = None,
) -> go.Figure:
    """The ROC curve with the chosen threshold's point; beside it, for a two-class report read at a
    threshold, the precision-recall curve (`(recall, precision, at_recall, at_precision)`) with the same
    point: one figure of two panels, not two charts (each chart is its own draw in the browser). `point`:
    the threshold's (false positive rate, sensitivity), as the page's cards show it."""
    roc_title = "ROC curve" + (f" (AUC {auc:.3f})" if auc is not None else "")
    titles = [roc_title] + (["Precision-recall curve"] if precision_recall is not None else [])
    figure = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.1)
    for trace in _roc_traces(roc, threshold, point):
        figure.add_trace(trace, row=1, col=1)
    figure.update_xaxes(title_text="false positive rate", range=[0, 1], row=1, col=1)
    figure.update_yaxes(title_text="true positive rate", range=[0, 1.02], row=1, col=1)
    if precision_recall is not None:
        for trace in _precision_recall_traces(*precision_recall):
            figure.add_trace(trace, row=1, col=2)
        figure.update_xaxes(title_text="recall (sensitivity)", range=[0, 1], row=1, col=2)
        figure.update_yaxes(title_text="precision (PPV)", range=[0, 1.02], row=1, col=2)
    figure.update_layout(title=" and ".join(titles), **_LAYOUT)
    return figure


def bulk_figure(
    shards: pd.DataFrame, bins: pd.DataFrame | None, threshold: float | None, positive_class: str | None
) -> go.Figure:
    """Progress by shard and, once anything is scored, the distribution of scores (`bins`, from
    `cnnq.dashboard.review.score_bins`: `start`, `count`, binned in SQL) with the threshold: one figure of
    two panels, not two charts (each chart is its own draw in the browser)."""
    titles = ["Progress by shard"] + (["Distribution of scores"] if bins is not None else [])
    figure = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.12)
    figure.add_trace(
        go.Bar(
            x=shards["progress"] * 100,
            y=shards["shard"],
            orientation="h",
            name="shards",
            marker={"color": [STATUS_COLORS.get(s, "gray") for s in shards["status"]]},
            text=shards["status"],
            textposition="auto",
        ),
        row=1,
        col=1,
    )
    figure.update_xaxes(title_text="% done", range=[0, 100], row=1, col=1)
    figure.update_yaxes(autorange="reversed", row=1, col=1)
    if bins is not None:
        width = float(bins["start"].iloc[1] - bins["start"].iloc[0]) if len(bins) > 1 else 1.0
        figure.add_trace(
            go.Bar(
                x=bins["start"] + width / 2, y=bins["count"], width=width, name="inputs", marker_line_width=0
            ),
            row=1,
            col=2,
        )
        if threshold is not None:
            figure.add_vline(
                x=threshold,
                line={"color": "crimson", "dash": "dash"},
                annotation_text=f"threshold {threshold:.3f}",
                row=1,
                col=2,
            )
        label = f"score (probability of {positive_class})" if positive_class else "score"
        figure.update_xaxes(title_text=label, range=[0, 1], row=1, col=2)
        figure.update_yaxes(title_text="inputs", row=1, col=2)
    figure.update_layout(
        title=" and ".join(titles),
        bargap=0,
        showlegend=False,
        **{**_LAYOUT, "height": max(320, 28 * len(shards) + 100)},
    )
    return figure


RUN_COLORS = qualitative.Dark24
"""One distinct colour per compared run (24 before they repeat)."""


def compare_figure(curves: pd.DataFrame, panels: Sequence[tuple[str, str]]) -> go.Figure:
    """Several metrics (`panels`: column, title) of several jobs overlaid, one panel per metric in a grid
    of two columns, one line per job in its own colour (the same in every panel, one legend entry): one
    figure, not one chart per metric (each chart is its own draw in the browser)."""
    rows = math.ceil(len(panels) / 2)
    figure = make_subplots(
        rows=rows,
        cols=2,
        subplot_titles=[title for _, title in panels],
        horizontal_spacing=0.1,
        vertical_spacing=0.16,
    )
    for panel, (metric, _) in enumerate(panels):
        row, col = panel // 2 + 1, panel % 2 + 1
        if metric in curves.columns:
            for index, (job_id, frame) in enumerate(curves.groupby("job", sort=False)):
                figure.add_trace(
                    go.Scatter(
                        x=frame["epoch"],
                        y=frame[metric],
                        mode="lines+markers",
                        name=job_id,
                        legendgroup=job_id,
                        showlegend=panel == 0,
                        meta=metric,
                        line={"color": RUN_COLORS[index % len(RUN_COLORS)]},
                    ),
                    row=row,
                    col=col,
                )
        figure.update_yaxes(title_text=metric, row=row, col=col)
        if "accuracy" in metric:
            figure.update_yaxes(range=[0, 1.02], row=row, col=col)
        figure.update_xaxes(title_text="epoch" if row == rows else None, row=row, col=col)
    figure.update_layout(title="Curves by epoch", **{**_LAYOUT, "height": 280 * rows})
    _whole_epochs(figure, curves)
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

"""The dashboard's charts: Vega-Lite specs (through Altair), built from the frames of
`cnnq.dashboard.queries`.

Vega-Lite, not plotly: a headless Chromium loads and parses plotly.js (4.7 MB) for every new tab, about
1 s of each first render that draws a plotly chart, where Vega's first chart costs about 0.15 s. Each
chart is one spec however many panels it has. Each curve or marked point has its own data with a `curve`
column naming it, which the legend, the tooltips and the tests read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

from cnnq.dashboard.status_colors import STATUS_COLORS

PANEL_WIDTH = 340
"""A panel's width in pixels: two side by side with their axes fit the page of a 1400-pixel window (940
pixels), a legend below them. A chart of panels cannot stretch to its container."""
PANEL_HEIGHT = 220
BEST = "seagreen"
CURVE_COLORS = ["#4c78a8", "#1f3f73", "#e45756"]
"""Train loss (drawn faint), smoothed and learning rate within epochs."""
CHOSEN = "crimson"

EPOCH_PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Loss", "loss", (("train_loss", "train loss"), ("val_loss", "validation loss"))),
    ("Accuracy", "accuracy", (("train_accuracy", "train accuracy"), ("val_accuracy", "validation accuracy"))),
    ("Learning rate", "learning rate", (("lr", "learning rate"),)),
    ("Images per second", "images / s", (("images_per_second", "images per second"),)),
)
"""The training page's per-epoch panels: title, y axis, and (history column, curve name) of each curve."""

RUN_COLORS = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86",
    "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE",
    "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)  # fmt: skip
"""One distinct colour per compared run (24 before they repeat)."""


def titled(chart: alt.TopLevelMixin, title: str) -> alt.TopLevelMixin:
    """`chart` under `title`, as every chart of the dashboard is titled (the tests find charts by it)."""
    return chart.properties(title=alt.TitleParams(title, anchor="start", fontSize=16))


def _joined(panels: Sequence[alt.LayerChart]) -> alt.TopLevelMixin:
    """Panels side by side as one chart titled by theirs, or the one panel alone."""
    if len(panels) == 1:
        return titled(panels[0], panels[0].title)
    return titled(alt.hconcat(*panels), " and ".join(str(p.title) for p in panels))


def _long(frame: pd.DataFrame, x: str, series: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """`frame`'s columns of `series` (column, curve name) that it has, as rows of `x`, `value`, `curve`."""
    present = [(column, name) for column, name in series if column in frame.columns]
    if not present:
        return pd.DataFrame({x: [], "value": [], "curve": []})
    long = frame[[x, *(c for c, _ in present)]].melt(id_vars=x, var_name="curve", value_name="value")
    long["curve"] = long["curve"].map(dict(present))
    return long.dropna(subset=["value"]).reset_index(drop=True)


def _epoch_x(frame: pd.DataFrame, title: str | None) -> alt.X:
    """Whole epochs on the axis; one epoch sits in the middle of a two-epoch-wide axis."""
    epochs = frame["epoch"].dropna().unique() if "epoch" in frame.columns else []
    domain = [float(epochs[0]) - 1, float(epochs[0]) + 1] if len(epochs) == 1 else alt.Undefined
    return alt.X(
        "epoch:Q",
        title=title,
        axis=alt.Axis(tickMinStep=1, format="d"),
        scale=alt.Scale(zero=False, nice=False, domain=domain),
    )


def _marker(x: float, label: str, color: str, x_field: str = "x") -> alt.LayerChart:
    """A labelled vertical line at `x` (the best epoch, a threshold)."""
    data = pd.DataFrame({x_field: [x], "label": [label]})
    rule = alt.Chart(data).mark_rule(color=color, strokeDash=[4, 3]).encode(x=f"{x_field}:Q")
    text = alt.Chart(data).mark_text(color=color, align="left", baseline="top", dx=4, dy=2)
    return rule + text.encode(x=f"{x_field}:Q", y=alt.value(0), text="label:N")


def training_figure(history: pd.DataFrame, best_epoch: int | None = None) -> alt.VConcatChart:
    """Loss, accuracy, learning rate and images/s by epoch as one chart of 2x2 panels, the best epoch
    marked on loss and accuracy."""
    panels = []
    for index, (title, y_title, series) in enumerate(EPOCH_PANELS):
        curves = _long(history, "epoch", series)
        y = alt.Y("value:Q", title=y_title)
        if title == "Learning rate":  # "800μ" reads as nothing; one value sits mid-axis, not on it
            lr = curves["value"]
            domain = [0.0, float(lr.iloc[0]) * 2] if len(lr) == 1 else alt.Undefined
            y = alt.Y("value:Q", title=y_title, axis=alt.Axis(format=".1e"), scale=alt.Scale(domain=domain))
        line = (
            alt.Chart(curves)
            .mark_line(point=True)
            .encode(
                x=_epoch_x(history, "epoch" if index >= 2 else None),
                y=y,
                color=alt.Color("curve:N", title=None, sort=[name for s in EPOCH_PANELS for _, name in s[2]]),
                tooltip=["curve:N", "epoch:Q", alt.Tooltip("value:Q", format=".4g")],
            )
        )
        layers: list[Any] = [line]
        if best_epoch is not None and index < 2:
            layers.append(_marker(best_epoch, f"best epoch {best_epoch}", BEST, "epoch"))
        panels.append(alt.layer(*layers).properties(title=title, width=PANEL_WIDTH, height=PANEL_HEIGHT))
    grid = alt.vconcat(alt.hconcat(*panels[:2]), alt.hconcat(*panels[2:]))
    return titled(grid, "Training by epoch").configure_legend(orient="bottom", columns=3)


def smoothed(values: pd.Series, smoothing: float) -> pd.Series:
    """An exponential moving average, as TensorBoard smooths: 0 keeps the values, 0.99 flattens them."""
    return values.ewm(alpha=1.0 - min(max(smoothing, 0.0), 0.999), adjust=True).mean()


def curve_figure(points: pd.DataFrame, x: str, smoothing: float) -> alt.LayerChart:
    """Train loss within epochs (each point, faint, and smoothed) with the learning rate on a second axis;
    `x` is `step` (batches trained) or `time` (wall clock)."""
    kind = "Q" if x == "step" else "T"
    x_axis = alt.X(
        f"{x}:{kind}",
        title="batches trained" if x == "step" else "time",
        axis=alt.Axis(format="d", tickMinStep=1) if x == "step" else alt.Axis(format="%H:%M:%S"),
    )
    color = alt.Color(
        "curve:N",
        title=None,
        scale=alt.Scale(domain=["train loss", "smoothed", "learning rate"], range=CURVE_COLORS),
    )
    tooltip = ["curve:N", alt.Tooltip(f"{x}:{kind}"), alt.Tooltip("value:Q", format=".4g")]
    loss_layers: list[Any] = []
    if "train_loss" in points.columns:
        loss = points.dropna(subset=["train_loss"])
        raw = pd.DataFrame({x: loss[x], "value": loss["train_loss"], "curve": "train loss"})
        smooth = raw.assign(value=smoothed(raw["value"], smoothing), curve="smoothed")
        y = alt.Y("value:Q", title="train loss")
        loss_layers = [
            alt.Chart(raw)
            .mark_line(opacity=0.35, strokeWidth=1)
            .encode(x=x_axis, y=y, color=color, tooltip=tooltip),
            alt.Chart(smooth).mark_line().encode(x=x_axis, y=y, color=color, tooltip=tooltip),
        ]
    layers: list[Any] = [alt.layer(*loss_layers)] if loss_layers else []
    if "lr" in points.columns:
        lr = points.dropna(subset=["lr"])
        frame = pd.DataFrame({x: lr[x], "value": lr["lr"], "curve": "learning rate"})
        y = alt.Y("value:Q", title="learning rate", axis=alt.Axis(format=".1e", orient="right"))
        layers.append(
            alt.Chart(frame).mark_line(strokeDash=[4, 3]).encode(x=x_axis, y=y, color=color, tooltip=tooltip)
        )
    chart = alt.layer(*layers).resolve_scale(y="independent").properties(height=280)
    return titled(chart, "Within epochs")


def confusion_figure(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], normalised: bool = False
) -> alt.LayerChart:
    """Counts, or (normalised) each true class's row as fractions: its recall on the diagonal."""
    labels = [str(c) for c in classes]
    rows = []
    for true, counts in zip(labels, matrix, strict=True):
        total = sum(counts)
        for predicted, count in zip(labels, counts, strict=True):
            value = (count / total if total else 0.0) if normalised else float(count)
            rows.append(
                {"true": true, "predicted": predicted, "value": value,
                 "text": f"{value:.2f}" if normalised else str(count)}
            )  # fmt: skip
    frame = pd.DataFrame(rows, columns=["true", "predicted", "value", "text"])
    top = 1.0 if normalised else max(float(frame["value"].max()), 1.0)
    base = alt.Chart(frame).encode(
        x=alt.X("predicted:N", sort=labels, title="predicted", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("true:N", sort=labels, title="true"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=alt.Scale(scheme="blues", domain=[0, top]), title=None),
        tooltip=["true:N", "predicted:N", "text:N"],
    )
    text = base.mark_text(fontSize=14).encode(
        text="text:N",
        color=alt.condition(alt.datum.value > top / 2, alt.value("white"), alt.value("black")),
    )
    title = "Confusion matrix" + (" (fraction of each true class)" if normalised else "")
    return titled((cells + text).properties(height=max(280, 50 * len(labels) + 120)), title)


def _point(x: float, y: float, curve: str, label: str | None = None) -> alt.LayerChart | alt.Chart:
    """One marked point (`curve` names it), labelled with `label` when given."""
    data = pd.DataFrame({"x": [x], "y": [y], "curve": [curve]})
    point = alt.Chart(data).mark_point(shape="cross", size=160, filled=True, color=CHOSEN)
    point = point.encode(x="x:Q", y="y:Q", tooltip=["curve:N", "x:Q", "y:Q"])
    if label is None:
        return point
    text = alt.Chart(data).mark_text(color=CHOSEN, align="left", baseline="top", dx=8, dy=6)
    return point + text.encode(x="x:Q", y="y:Q", text=alt.value(label))


def _unit_axes(x_title: str, y_title: str) -> dict[str, Any]:
    return {
        "x": alt.X("x:Q", title=x_title, scale=alt.Scale(domain=[0, 1])),
        "y": alt.Y("y:Q", title=y_title, scale=alt.Scale(domain=[0, 1.02])),
    }


def _roc_panel(
    roc: dict[str, Sequence[float | None]],
    threshold: float | None,
    point: tuple[float, float] | None,
    title: str,
) -> alt.LayerChart:
    """The ROC curve and chance line, with the operating point of the chosen threshold marked: `point`
    (false positive rate, sensitivity) when the page worked it out, else the stored curve's point."""
    fpr, tpr = list(roc["fpr"]), list(roc["tpr"])
    # The first ROC threshold is infinite, which JSON stores as null.
    thresholds = [math.inf if t is None else t for t in roc.get("thresholds", [])]
    curve = pd.DataFrame({"x": fpr, "y": tpr, "curve": "ROC"})
    chance = pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0], "curve": "chance"})
    axes = _unit_axes("false positive rate", "true positive rate")
    layers: list[Any] = [
        alt.Chart(curve).mark_line().encode(**axes, tooltip=["x:Q", "y:Q"]),
        alt.Chart(chance).mark_line(strokeDash=[4, 3], color="gray").encode(**axes),
    ]
    if point is None and threshold is not None and thresholds:
        # The last ROC point whose threshold is still >= the chosen one.
        index = max((i for i, t in enumerate(thresholds) if t >= threshold), default=0)
        point = (float(fpr[index] or 0.0), float(tpr[index] or 0.0))
    if threshold is not None and point is not None:
        name = f"threshold {threshold:.3f}"
        layers.append(_point(point[0], point[1], name, name))
    return alt.layer(*layers).properties(title=title, width=PANEL_WIDTH, height=PANEL_HEIGHT + 60)


def roc_figure(
    roc: dict[str, Sequence[float | None]],
    threshold: float | None,
    auc: float | None,
    precision_recall: tuple[Sequence[float], Sequence[float], float, float] | None = None,
    point: tuple[float, float] | None = None,
) -> alt.HConcatChart:
    """The ROC curve with the chosen threshold's point; beside it, for a two-class report read at a
    threshold, the precision-recall curve (`(recall, precision, at_recall, at_precision)`) with the same
    point. `point`: the threshold's (false positive rate, sensitivity), as the page's cards show it."""
    roc_title = "ROC curve" + (f" (AUC {auc:.3f})" if auc is not None else "")
    panels: list[Any] = [_roc_panel(roc, threshold, point, roc_title)]
    if precision_recall is not None:
        recall, precision, at_recall, at_precision = precision_recall
        curve = pd.DataFrame({"x": list(recall), "y": list(precision), "curve": "precision-recall"})
        axes = _unit_axes("recall (sensitivity)", "precision (PPV)")
        layers: list[Any] = [alt.Chart(curve).mark_line().encode(**axes, tooltip=["x:Q", "y:Q"])]
        if not (math.isnan(at_recall) or math.isnan(at_precision)):
            layers.append(_point(at_recall, at_precision, "chosen threshold"))
        panels.append(
            alt.layer(*layers).properties(
                title="Precision-recall curve", width=PANEL_WIDTH, height=PANEL_HEIGHT + 60
            )
        )
    return _joined(panels)


def bulk_figure(
    shards: pd.DataFrame, bins: pd.DataFrame | None, threshold: float | None, positive_class: str | None
) -> alt.HConcatChart:
    """Progress by shard and, once anything is scored, the distribution of scores (`bins`, from
    `cnnq.dashboard.review.score_bins`: `start`, `count`, binned in SQL) with the threshold."""
    progress = pd.DataFrame(
        {"shard": shards["shard"], "status": shards["status"], "done": shards["progress"] * 100}
    )
    y = alt.Y("shard:N", sort=None, title=None)
    bars = (
        alt.Chart(progress)
        .mark_bar()
        .encode(
            x=alt.X("done:Q", title="% done", scale=alt.Scale(domain=[0, 100])),
            y=y,
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values())),
                legend=None,
            ),
            tooltip=["shard:N", "status:N", alt.Tooltip("done:Q", format=".0f")],
        )
    )
    labels = (
        alt.Chart(progress)
        .mark_text(align="left", dx=4, color="white")
        .encode(x=alt.value(0), y=y, text="status:N")
    )
    height = max(PANEL_HEIGHT, 24 * len(progress))
    panels: list[Any] = [
        (bars + labels).properties(title="Progress by shard", width=PANEL_WIDTH, height=height)
    ]
    if bins is not None:
        width = float(bins["start"].iloc[1] - bins["start"].iloc[0]) if len(bins) > 1 else 1.0
        counts = pd.DataFrame({"start": bins["start"], "end": bins["start"] + width, "count": bins["count"]})
        label = f"score (probability of {positive_class})" if positive_class else "score"
        layers: list[Any] = [
            alt.Chart(counts)
            .mark_bar()
            .encode(
                x=alt.X("start:Q", title=label, scale=alt.Scale(domain=[0, 1])),
                x2="end:Q",
                y=alt.Y("count:Q", title="inputs"),
                y2=alt.datum(0),
                tooltip=["start:Q", "end:Q", "count:Q"],
            )
        ]
        if threshold is not None:
            layers.append(_marker(threshold, f"threshold {threshold:.3f}", CHOSEN, "start"))
        panels.append(
            alt.layer(*layers).properties(title="Distribution of scores", width=PANEL_WIDTH, height=height)
        )
    return _joined(panels)


def _run_color(jobs: Sequence[str]) -> alt.Color:
    """The compared runs' colours, the same in every panel and chart of the page."""
    domain = list(dict.fromkeys(jobs))
    range_ = [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(domain))]
    return alt.Color("job:N", title=None, scale=alt.Scale(domain=domain, range=range_))


def compare_figure(curves: pd.DataFrame, panels: Sequence[tuple[str, str]]) -> alt.VConcatChart:
    """Several metrics (`panels`: column, title) of several jobs overlaid, one panel per metric in a grid
    of two columns, one line per job in its own colour (the same in every panel, one legend)."""
    color = _run_color([str(j) for j in curves["job"]])
    drawn = []
    for metric, title in panels:
        column = curves[metric] if metric in curves.columns else pd.Series(dtype=float)
        data = pd.DataFrame({"job": curves["job"].astype(str), "epoch": curves["epoch"], "value": column})
        data = data.dropna(subset=["value"]).assign(curve=metric)
        y = alt.Y("value:Q", title=metric)
        if "accuracy" in metric:
            y = alt.Y("value:Q", title=metric, scale=alt.Scale(domain=[0, 1.02]))
        line = (
            alt.Chart(data)
            .mark_line(point=True)
            .encode(
                x=_epoch_x(curves, "epoch"),
                y=y,
                color=color,
                tooltip=["job:N", "epoch:Q", alt.Tooltip("value:Q", format=".4g")],
            )
        )
        drawn.append(line.properties(title=title, width=PANEL_WIDTH, height=PANEL_HEIGHT))
    rows = [alt.hconcat(*drawn[i : i + 2]) for i in range(0, len(drawn), 2)]
    return titled(alt.vconcat(*rows), "Curves by epoch").configure_legend(orient="bottom", columns=4)


def parameter_figure(summary: pd.DataFrame, parameter: str, metric: str) -> alt.Chart:
    """Each compared run as a point: a hyperparameter against a metric."""
    data = pd.DataFrame(
        {"job": summary["job"].astype(str), "x": summary[parameter], "y": summary[metric], "curve": "runs"}
    )
    kind = {axis: "Q" if pd.api.types.is_numeric_dtype(data[axis]) else "N" for axis in ("x", "y")}
    chart = (
        alt.Chart(data)
        .mark_point(filled=True, size=160)
        .encode(
            x=alt.X(f"x:{kind['x']}", title=parameter),
            y=alt.Y(f"y:{kind['y']}", title=metric),
            color=_run_color(data["job"].tolist()),
            tooltip=["job:N", alt.Tooltip("x", title=parameter), alt.Tooltip("y", title=metric)],
        )
        .properties(height=300)
    )
    return titled(chart, f"{metric} against {parameter}")

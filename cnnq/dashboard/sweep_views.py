"""What the Sweeps page shows: the trials table from cnnq's tables (`cnnq.sweeps.report`), and the charts
of the sweep (Vega-Lite, as all the dashboard's charts): its trials' values and parameters from the same
tables, each trial's value per epoch and the parameters' importances from its Optuna study. Nothing here
imports Streamlit."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import altair as alt
import pandas as pd

from cnnq.dashboard.charts import titled
from cnnq.dashboard.status_colors import STATUS_COLORS
from cnnq.sweeps.report import SweepSummary, TrialSummary
from cnnq.sweeps.spec import Param


def trials_frame(summary: SweepSummary) -> pd.DataFrame:
    """One row per trial, best first: its job page, status, parameter values, metric and epochs."""
    names = [p.name for p in summary.spec.params]
    rows = [
        {
            "trial": trial.number,
            "job": f"job?job={trial.job_id}",
            "status": trial.status,
            **{name: trial.values.get(name) for name in names},
            summary.spec.metric: trial.value,
            "epochs": trial.epochs,
            "pruned after epoch": trial.pruned_at,
        }
        for trial in summary.trials
    ]
    columns = ["trial", "job", "status", *names, summary.spec.metric, "epochs", "pruned after epoch"]
    frame = pd.DataFrame(rows, columns=columns)
    for name in names:  # a column of numbers stays numeric; one that mixes kinds becomes text
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in frame[name]):
            frame[name] = frame[name].map(str)
    return frame


def study_figures(summary: SweepSummary) -> dict[str, alt.TopLevelMixin | str]:
    """Each chart by its title, or, where the study cannot draw it yet, a line saying why."""
    import optuna

    from cnnq.sweeps.study import load_study

    metric = summary.spec.metric
    done = sorted(
        (t for t in summary.trials if t.status == "SUCCEEDED" and t.value is not None), key=lambda t: t.number
    )
    makers: dict[str, Callable[[], alt.TopLevelMixin]] = {
        f"Best {metric} so far": lambda: _history(done, metric, summary.spec.direction),
        f"{metric} per epoch (pruned trials stop early)": lambda: _per_epoch(
            load_study(summary.sweep_id, summary.spec).trials, metric
        ),
        f"{metric} against each parameter": lambda: _slices(done, summary.spec.params, metric),
        "Parallel coordinates": lambda: _parallel(done, summary.spec.params, metric),
        f"Parameter importances for {metric}": lambda: _importances(
            optuna.importance.get_param_importances(load_study(summary.sweep_id, summary.spec)), metric
        ),
    }
    found: dict[str, alt.TopLevelMixin | str] = {}
    for title, make in makers.items():
        if len(done) < (2 if title.startswith("Parameter importances") else 1):
            found[title] = f"{title}: drawn once {'two trials have' if done else 'a trial has'} succeeded"
            continue
        try:
            chart = make()
        except (ValueError, RuntimeError) as error:  # e.g. importances of parameters that never varied
            found[title] = f"{title}: {error}"
            continue
        found[title] = titled(chart, title)
    return found


def _history(done: list[TrialSummary], metric: str, direction: str) -> alt.LayerChart:
    """Each succeeded trial's value by its number, and the best so far."""
    values = pd.DataFrame({"trial": [t.number for t in done], "value": [t.value for t in done]})
    best = values["value"].cummax() if direction == "maximize" else values["value"].cummin()
    x, y = alt.X("trial:Q", axis=alt.Axis(tickMinStep=1, format="d")), alt.Y("value:Q", title=metric)
    color = alt.Color(
        "curve:N", title=None, scale=alt.Scale(domain=[metric, "best so far"], range=["#4c78a8", "#e45756"])
    )
    trials = alt.Chart(values.assign(curve=metric)).mark_point(filled=True, size=60)
    line = alt.Chart(values.assign(value=best, curve="best so far")).mark_line(interpolate="step-after")
    return (trials.encode(x=x, y=y, color=color) + line.encode(x=x, y=y, color=color)).properties(height=260)


def _per_epoch(trials: list[Any], metric: str) -> alt.Chart:
    """Each trial's value at each epoch as its pruner saw them, coloured by how the trial ended (a failed
    trial's epochs too: Optuna's FAIL is cnnq's FAILED)."""
    ended = {"COMPLETE": "SUCCEEDED", "PRUNED": "PRUNED", "RUNNING": "RUNNING", "FAIL": "FAILED"}
    rows = [
        {"trial": t.number, "epoch": step, "value": value, "status": ended.get(t.state.name, t.state.name)}
        for t in trials
        for step, value in sorted(t.intermediate_values.items())
    ]
    frame = pd.DataFrame(rows, columns=["trial", "epoch", "value", "status"])
    statuses = [s for s in STATUS_COLORS if s in set(frame["status"])]
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("value:Q", title=metric),
            detail="trial:N",
            color=alt.Color(
                "status:N",
                title=None,
                scale=alt.Scale(domain=statuses, range=[STATUS_COLORS[s] for s in statuses]),
            ),
            tooltip=["trial:N", "status:N", "epoch:Q", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(height=260)
    )


def _param_rows(done: list[TrialSummary], param: Param) -> pd.DataFrame:
    rows = [(t.number, t.values.get(param.name), t.value) for t in done]
    frame = pd.DataFrame(rows, columns=["trial", "x", "value"]).dropna(subset=["x"])
    return frame.assign(x=frame["x"].map(str)) if param.choices is not None else frame


def _slices(done: list[TrialSummary], params: list[Param], metric: str) -> alt.ConcatChart:
    """The metric against each parameter, one panel each: a point per succeeded trial."""
    panels = []
    for param in params:
        if param.choices is not None:
            x = alt.X("x:N", title=param.name, sort=[str(c) for c in param.choices])
        else:
            log = param.distribution.startswith("log")
            x = alt.X("x:Q", title=param.name, scale=alt.Scale(type="log" if log else "linear", zero=False))
        points = alt.Chart(_param_rows(done, param).assign(curve=param.name)).mark_point(filled=True)
        panels.append(
            points.encode(
                x=x,
                y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
                color=alt.Color("trial:Q", scale=alt.Scale(scheme="viridis")),
                tooltip=["trial:N", alt.Tooltip("x", title=param.name), alt.Tooltip("value:Q", format=".4g")],
            ).properties(title=param.name, width=260, height=220)
        )
    return alt.concat(*panels, columns=3)


def _parallel(done: list[TrialSummary], params: list[Param], metric: str) -> alt.LayerChart:
    """One line per succeeded trial across an axis per parameter and the metric, each axis scaled to
    its own range (on a log scale for a log range), its ends or choices written on it."""
    axes: list[tuple[str, pd.DataFrame, list[str]]] = []  # name, (trial, position, shown), labels
    for name, param in [(metric, None), *((p.name, p) for p in params)]:
        rows = pd.DataFrame(
            [(t.number, t.value if param is None else t.values.get(name)) for t in done],
            columns=["trial", "raw"],
        ).dropna()
        if param is not None and param.choices is not None:
            labels = list(dict.fromkeys([*map(str, param.choices), *rows["raw"].map(str)]))
            place = {label: i / max(len(labels) - 1, 1) for i, label in enumerate(labels)}
            position = rows["raw"].map(str).map(place)
        else:
            scaled = rows["raw"].astype(float)
            if param is not None and param.distribution.startswith("log"):
                scaled = scaled.map(math.log10)
            low, high = scaled.min(), scaled.max()
            position = (scaled - low) / (high - low) if high > low else pd.Series(0.5, index=scaled.index)
            labels = [f"{rows['raw'].min():.4g}", f"{rows['raw'].max():.4g}"]
        shown = rows["raw"].map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
        axes.append((name, rows.assign(axis=name, position=position, shown=shown), labels))
    values = {t.number: t.value for t in done}
    lines = pd.concat([frame for _, frame, _ in axes]).assign(value=lambda f: f["trial"].map(values))
    ticks = pd.DataFrame(
        [{"axis": name, "position": i / max(len(labels) - 1, 1), "label": label}
         for name, _, labels in axes for i, label in enumerate(labels)]
    )  # fmt: skip
    order = [name for name, _, _ in axes]
    x = alt.X("axis:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, orient="top"))
    y = alt.Y("position:Q", axis=None, scale=alt.Scale(domain=[0, 1]))
    color = alt.Color("value:Q", title=metric, scale=alt.Scale(scheme="viridis"))
    tooltip = ["trial:N", "axis:N", "shown:N", alt.Tooltip("value:Q", format=".4g", title=metric)]
    drawn = (
        alt.Chart(lines)
        .mark_line(opacity=0.7)
        .encode(x=x, y=y, detail="trial:N", color=color, tooltip=tooltip)
    )
    rules = alt.Chart(pd.DataFrame({"axis": order})).mark_rule(color="gray").encode(x=x)
    text = alt.Chart(ticks).mark_text(align="left", dx=4).encode(x=x, y=y, text="label:N")
    return (rules + drawn + text).properties(height=280)


def _importances(importances: dict[str, float], metric: str) -> alt.Chart:
    """How much of the metric's variance each parameter explains (Optuna's fANOVA)."""
    frame = pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())})
    return (
        alt.Chart(frame.assign(curve="importance"))
        .mark_bar()
        .encode(
            x=alt.X("importance:Q", title=f"importance for {metric}"),
            y=alt.Y("parameter:N", sort="-x", title=None),
            tooltip=["parameter:N", alt.Tooltip("importance:Q", format=".3f")],
        )
        .properties(height=100 + 30 * len(frame))
    )

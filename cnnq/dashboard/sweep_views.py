"""What the Sweeps page shows: the trials table from cnnq's tables (`cnnq.sweeps.report`), and the charts
of the sweep's Optuna study, drawn by Optuna's `visualization` functions. Nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from cnnq.sweeps.report import SweepSummary


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


def study_figures(summary: SweepSummary) -> dict[str, go.Figure | str]:
    """Each chart by its title, or, where the study cannot draw it yet, a line saying why."""
    import optuna.visualization as plots

    from cnnq.sweeps.study import load_study

    study = load_study(summary.sweep_id, summary.spec)
    metric = summary.spec.metric
    makers: dict[str, Callable[[Any], go.Figure]] = {
        f"Best {metric} so far": lambda s: plots.plot_optimization_history(s, target_name=metric),
        f"{metric} per epoch (pruned trials stop early)": plots.plot_intermediate_values,
        f"{metric} against each parameter": lambda s: plots.plot_slice(s, target_name=metric),
        "Parallel coordinates": lambda s: plots.plot_parallel_coordinate(s, target_name=metric),
        f"Parameter importances for {metric}": lambda s: plots.plot_param_importances(s, target_name=metric),
    }
    completed = sum(t.status == "SUCCEEDED" for t in summary.trials)
    found: dict[str, go.Figure | str] = {}
    for title, make in makers.items():
        if completed < (2 if title.startswith("Parameter importances") else 1):
            found[title] = (
                f"{title}: drawn once {'two trials have' if completed else 'a trial has'} succeeded"
            )
            continue
        try:
            figure = make(study)
        except (ValueError, RuntimeError) as error:  # e.g. importances of parameters that never varied
            found[title] = f"{title}: {error}"
            continue
        figure.update_layout(title=title)
        found[title] = figure
    return found

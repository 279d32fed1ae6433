"""Compare: any training runs, found by search, side by side: the hyperparameters they used, their best
and final metrics, their curves overlaid in distinct colours, and a parameter-against-metric view."""

from __future__ import annotations

import streamlit as st

from cnnq.dashboard import charts
from cnnq.dashboard.queries import comparison
from cnnq.dashboard.runs import RunFilter, runs_page
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus

CHOICES = 200

st.title("Compare training runs")

search = st.text_input(
    "Find runs", placeholder="id, model, dataset…", key="compare_search", help="Searches every training job."
)
requested = [j for value in st.query_params.get_all("jobs") for j in value.split(",") if j]
with session_scope() as session:
    found = runs_page(session, RunFilter(kinds=["train"], search=search), page_size=CHOICES)
    if "jobs" not in st.query_params:  # the two newest finished runs, not whatever ran last
        finished = runs_page(session, RunFilter(kinds=["train"], statuses=[JobStatus.SUCCEEDED]), page_size=2)
        requested = list(finished["id"])
labels = {row.id: f"{row.id} · {row.model} on {row.dataset} · {row.status}" for row in found.itertuples()}
selected = st.multiselect(
    "Training runs",
    list(dict.fromkeys([*requested, *found["id"]])),  # the chosen ones stay, whatever the search finds
    default=requested,
    format_func=lambda job_id: labels.get(job_id, job_id),
    key="compare_jobs",
)
st.query_params["jobs"] = ",".join(selected)
if not selected:
    st.info("Choose one or more training runs (search to find older ones).")
    st.stop()

differing_only = st.toggle("Only the hyperparameters that differ", value=True, key="differing_only")
with session_scope() as session:
    curves, summary = comparison(session, selected, differing_only=differing_only)

st.subheader("Hyperparameters used, and metrics")
st.dataframe(
    summary.assign(open="job?job=" + summary["job"]),
    hide_index=True,
    width="stretch",
    key="compare_table",
    placeholder="",  # an empty cell, not "None"
    column_order=["open", *[c for c in summary.columns if c != "job"]],
    column_config={"open": st.column_config.LinkColumn("job", display_text=r"job=(.*)$")},
)

if curves.empty:
    st.info("None of these runs has finished an epoch yet.")
    st.stop()
panels = [
    ("val_accuracy", "Validation accuracy"),
    ("val_loss", "Validation loss"),
    ("train_accuracy", "Training accuracy"),
    ("train_loss", "Training loss"),
]
st.altair_chart(charts.compare_figure(curves, panels), key="compare_chart")  # one chart of four panels

st.subheader("A hyperparameter against a metric")
numeric = [c for c in summary.columns if c not in ("job", "status") and summary[c].notna().any()]
if len(summary) > 1 and numeric:
    axes = st.columns(2)
    parameter = axes[0].selectbox(
        "Hyperparameter", [c for c in numeric if summary[c].dtype == object] or numeric
    )
    metric = axes[1].selectbox("Metric", [c for c in numeric if summary[c].dtype != object] or numeric)
    st.altair_chart(charts.parameter_figure(summary, parameter, metric), key="parameter_chart")

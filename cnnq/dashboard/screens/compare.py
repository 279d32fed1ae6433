"""Compare: several training jobs' curves overlaid, with the options that differ and their final metrics."""

from __future__ import annotations

import streamlit as st

from cnnq.dashboard import charts
from cnnq.dashboard.queries import comparison, training_jobs
from cnnq.db.session import session_scope

st.title("Compare training runs")

with session_scope() as session:
    choices = [job.id for job in training_jobs(session)]
if not choices:
    st.info("No training jobs yet.")
    st.stop()

requested = [j for j in st.query_params.get_all("jobs") for j in j.split(",") if j in choices]
selected = st.multiselect("Training jobs", choices, default=requested or choices[:2], key="compare_jobs")
st.query_params["jobs"] = ",".join(selected)
if not selected:
    st.info("Choose two or more training jobs.")
    st.stop()

with session_scope() as session:
    curves, summary = comparison(session, selected)

st.subheader("Options that differ, and final metrics")
st.dataframe(summary, hide_index=True, width="stretch", key="compare_table")

if curves.empty:
    st.info("None of these jobs has finished an epoch yet.")
    st.stop()
panels = [
    ("val_accuracy", "Validation accuracy"),
    ("val_loss", "Validation loss"),
    ("train_accuracy", "Training accuracy"),
    ("train_loss", "Training loss"),
]
for row in range(0, len(panels), 2):
    columns = st.columns(2)
    for column, (metric, title) in zip(columns, panels[row : row + 2], strict=True):
        column.plotly_chart(charts.compare_figure(curves, metric, title), key=f"compare_{metric}")

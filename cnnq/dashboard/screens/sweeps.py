"""Sweeps: a hyperparameter sweep's trials (each linked to its job page), its best trial, pruning, and the
charts of its study: best so far, metric per epoch, metric against each parameter, parallel coordinates,
parameter importances."""

from __future__ import annotations

import streamlit as st

from cnnq.dashboard.refresh import refresh_interval
from cnnq.dashboard.sweep_views import study_figures, trials_frame
from cnnq.db.jobs import JobNotFound, find_job, list_jobs
from cnnq.db.session import session_scope
from cnnq.sweeps.report import summarize, values_text

st.title("Sweeps")

with session_scope() as session:
    choices = [job.id for job in list_jobs(session, kinds=("sweep",), limit=200)]
if not choices:
    st.info(
        "No sweeps yet. Start one with "
        "`cnnq sweep --model lenet --dataset mnist --param lr=loguniform:1e-4:1e-1`."
    )
    st.stop()

requested = st.query_params.get("sweep")
index = choices.index(requested) if requested in choices else 0
sweep_id = st.selectbox("Sweep", choices, index=index, key="sweep")
st.query_params["sweep"] = sweep_id

try:
    with session_scope() as session:
        initially_live = not find_job(session, sweep_id).status.finished
except JobNotFound as missing:
    st.error(str(missing))
    st.stop()


@st.fragment(run_every=refresh_interval(initially_live))
def sweep_view() -> None:
    with session_scope() as session:
        summary = summarize(session, find_job(session, sweep_id))
    spec = summary.spec
    if (summary.status in ("QUEUED", "RUNNING")) != initially_live:
        st.rerun()
    st.markdown(
        f"[{sweep_id}](job?job={sweep_id}) · **{summary.status}** · {spec.sampler} sampler, "
        f"{spec.prune} pruning, {spec.direction} {spec.metric}, {spec.parallel} at a time"
    )
    if summary.message:
        st.caption(summary.message)
    best = summary.best
    cards = st.columns(4)
    cards[0].metric("trials ended", f"{summary.ended} / {spec.trials}")
    cards[1].metric(f"best {spec.metric}", "-" if best is None else f"{best.value:.4f}")
    cards[2].metric("pruned", sum(summary.pruned_at().values()))
    saved = summary.saved_seconds / summary.full_seconds if summary.full_seconds else 0.0
    cards[3].metric("epoch time saved by pruning", f"{saved:.0%}")
    if best is not None:
        st.markdown(
            f"Best: trial {best.number}, [{best.job_id}](job?job={best.job_id}): {values_text(best.values)}"
        )

    frame = trials_frame(summary)
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key="trials_table",
        column_config={
            "job": st.column_config.LinkColumn("job", display_text=r"job=(.*)$", help="Open the trial's job"),
            spec.metric: st.column_config.NumberColumn(spec.metric, format="%.4f"),
        },
    )
    for title, figure in study_figures(summary).items():
        if isinstance(figure, str):
            st.caption(figure)
        else:
            st.altair_chart(figure, key=title)


sweep_view()

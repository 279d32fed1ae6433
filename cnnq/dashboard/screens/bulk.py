"""Bulk scoring: a bulk inference job's shards, its score distribution, top and flagged inputs."""

from __future__ import annotations

import streamlit as st

from cnnq.dashboard import charts
from cnnq.dashboard.queries import (
    bulk_decision,
    bulk_jobs,
    predictions_frame,
    results_csv,
    shards_frame,
)
from cnnq.dashboard.refresh import refresh_interval
from cnnq.dashboard.thumbnails import thumbnail_url
from cnnq.db.jobs import JobNotFound, find_job
from cnnq.db.records import prediction_counts
from cnnq.db.session import session_scope

TOP_ROWS = 20

st.title("Bulk scoring")

with session_scope() as session:
    choices = [job.id for job in bulk_jobs(session)]
if not choices:
    st.info("No inference jobs yet. Score a folder with `cnnq submit infer --model-from JOB --input DIR`.")
    st.stop()

requested = st.query_params.get("job")
index = choices.index(requested) if requested in choices else 0
job_id = st.selectbox("Inference job", choices, index=index, key="bulk_job")
st.query_params["job"] = job_id

try:
    with session_scope() as session:
        initially_live = not find_job(session, job_id).status.finished
except JobNotFound as missing:
    st.error(str(missing))
    st.stop()


@st.fragment(run_every=refresh_interval(initially_live))
def bulk_view() -> None:
    with session_scope() as session:
        job = find_job(session, job_id)
        shards = shards_frame(session, job)
        predictions = predictions_frame(session, job.id)
        threshold, positive_class = bulk_decision(session, job)
        counts = prediction_counts(session, job.id, positive_class)
        status = job.status
    if status.finished == initially_live:
        st.rerun()
    st.markdown(f"[{job_id}](job?job={job_id}) · **{status}** · {len(shards)} shard(s)")

    cards = st.columns(4)
    cards[0].metric("inputs", counts["inputs"])
    cards[1].metric("scored", counts["scored"])
    cards[2].metric(f"positive ({positive_class})" if positive_class else "positive", counts["positive"])
    cards[3].metric("flagged", counts["flagged"], help="Inputs that could not be read or scored.")

    left, right = st.columns(2)
    left.plotly_chart(charts.shard_progress_figure(shards), key="shard_chart")
    scores = predictions["score"].dropna()
    if not scores.empty:
        right.plotly_chart(charts.score_histogram(scores, threshold, positive_class), key="score_histogram")

    scored = predictions[predictions["error"].isna()].head(TOP_ROWS).copy()
    flagged = predictions[predictions["error"].notna()].head(TOP_ROWS).copy()
    image = st.column_config.ImageColumn("image", width="small")
    score = st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.3f")
    st.subheader(f"Top {len(scored)} scores")
    if scored.empty:
        st.caption("Nothing scored yet.")
    else:
        scored.insert(0, "image", scored["input"].map(thumbnail_url))
        st.dataframe(
            scored[["image", "input", "label", "score", "shard"]],
            hide_index=True,
            width="stretch",
            row_height=64,
            column_config={"image": image, "score": score},
            key="top_table",
        )
    st.subheader(f"Flagged inputs ({counts['flagged']})")
    if flagged.empty:
        st.caption("None: every input was read and scored.")
    else:
        flagged.insert(0, "image", flagged["input"].map(thumbnail_url))
        st.dataframe(
            flagged[["image", "input", "error", "shard"]],
            hide_index=True,
            width="stretch",
            column_config={"image": image},
            key="flagged_table",
        )
    st.subheader("Shards")
    st.dataframe(
        shards,
        hide_index=True,
        width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)},
        key="shards_table",
    )
    st.download_button(
        "Download results (CSV)",
        results_csv(predictions),
        file_name=f"{job_id}.csv",
        mime="text/csv",
        icon=":material/download:",
        key="download",
    )


bulk_view()

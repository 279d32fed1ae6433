"""Bulk scoring: a bulk inference job's shards and counts, its score distribution, and a review queue of
its inputs (filtered by label, score range or flag, paged in SQL), with the results as `cnnq results`
writes them."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import streamlit as st

from cnnq.dashboard import charts
from cnnq.dashboard.model_cache import gradcam_overlay, model_of_job
from cnnq.dashboard.queries import bulk_jobs, shards_frame
from cnnq.dashboard.refresh import refresh_interval
from cnnq.dashboard.review import (
    ReviewFilter,
    bulk_counts,
    results_csv,
    review_count,
    review_page,
    score_bins,
)
from cnnq.dashboard.thumbnails import thumbnail_url
from cnnq.data.decode import ImageDecodeError, load_image
from cnnq.db.jobs import JobNotFound, bulk_decision, find_job
from cnnq.db.results import prediction_scope
from cnnq.db.session import session_scope
from cnnq.errors import UserError

PAGE_SIZES = (20, 50, 100)
SHOWN = {"scored": "Scored", "flagged": "Flagged", "all": "All"}

st.title("Bulk scoring")

with session_scope() as session:
    choices = [job.id for job in bulk_jobs(session)]
    requested = st.query_params.get("job")
    if requested and requested not in choices:  # an older job than the list holds, opened by its link
        try:
            choices.insert(0, find_job(session, requested).id)
        except JobNotFound as missing:
            st.error(str(missing))
if not choices:
    st.info("No inference jobs yet. Score a folder with `cnnq submit infer --model-from JOB --input DIR`.")
    st.stop()

index = choices.index(requested) if requested in choices else 0
job_id = st.selectbox("Inference job", choices, index=index, key="bulk_job")
st.query_params["job"] = job_id

with session_scope() as session:
    selected_job = find_job(session, job_id)
    initially_live = not selected_job.status.finished
    model_from = selected_job.spec.get("model_from")


@st.fragment(run_every=refresh_interval(initially_live))
def bulk_view() -> None:
    with session_scope() as session:
        job = find_job(session, job_id)
        shards = shards_frame(session, job)
        threshold, positive_class = bulk_decision(session, job)
        scope = prediction_scope(session, job)  # a --resume job's rows are those of the job it resumed
        counts = bulk_counts(session, scope.bulk_id, positive_class)
        bins = score_bins(session, scope.bulk_id)
        status = job.status
    if status.finished == initially_live:
        st.rerun()
    facts = [f"[{job_id}](job?job={job_id})", f"**{status}**", f"{len(shards)} shard(s)"]
    if model_from:  # the training job whose model scored it
        facts.append(f"model of [{model_from}](job?job={model_from})")
    st.markdown(" · ".join(facts))

    cards = st.columns(4)
    cards[0].metric("inputs", counts["inputs"])
    cards[1].metric("scored", counts["scored"])
    cards[2].metric(f"positive ({positive_class})" if positive_class else "positive", counts["positive"])
    cards[3].metric("flagged", counts["flagged"], help="Inputs that could not be read or scored.")

    st.altair_chart(
        charts.bulk_figure(shards, bins if counts["scored"] else None, threshold, positive_class),
        key="bulk_chart",
    )

    review_queue(scope.bulk_id, scope.classes, counts)

    st.subheader("Shards")
    st.dataframe(
        shards.assign(shard="job?job=" + shards["shard"]),
        hide_index=True,
        width="stretch",
        column_config={
            "shard": st.column_config.LinkColumn("shard", display_text=r"job=(.*)$"),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
        },
        key="shards_table",
    )
    st.download_button(
        "Download results (CSV, as `cnnq results` writes them)",
        lambda: results_csv(job_id),
        file_name=f"{job_id}.csv",
        mime="text/csv",
        icon=":material/download:",
        key="download",
    )


def review_queue(bulk_id: str, labels: list[str], counts: dict[str, int]) -> None:
    st.subheader("Review queue")
    controls = st.columns([2, 3, 3, 2], vertical_alignment="bottom")
    shown = controls[0].radio("Show", list(SHOWN), format_func=SHOWN.get, horizontal=True, key="review_shown")
    chosen_labels = controls[1].multiselect("Label", labels, key="review_labels")
    low, high = controls[2].slider("Score", 0.0, 1.0, (0.0, 1.0), step=0.01, key="review_scores")
    order = controls[3].selectbox("Order", ["highest score first", "lowest score first"], key="review_order")
    review = ReviewFilter(
        shown=shown or "scored", labels=tuple(chosen_labels), score_min=float(low), score_max=float(high)
    )
    with session_scope() as session:
        total = review_count(session, bulk_id, review, counts)
    paging = st.columns([1, 1, 4], vertical_alignment="bottom")
    page_size = paging[1].selectbox("Rows per page", PAGE_SIZES, key="review_page_size")
    pages = max(1, math.ceil(total / page_size))
    page = min(int(paging[0].number_input("Page", min_value=1, value=1, step=1, key="review_page")), pages)
    paging[2].caption(f"{total:,} inputs match · page {page} of {pages:,}")
    with session_scope() as session:
        rows = review_page(
            session,
            bulk_id,
            review,
            page=page,
            page_size=page_size,
            highest_first=order.startswith("highest"),
        )
    if rows.empty:
        st.caption("No input matches.")
        return
    rows.insert(0, "image", rows["input"].map(thumbnail_url))
    rows["shard"] = "job?job=" + rows["shard"]
    event = st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        row_height=64,
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "image": st.column_config.ImageColumn("image", width="small"),
            "score": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.3f"),
            "shard": st.column_config.LinkColumn("shard", display_text=r"job=(.*)$"),
        },
        key="review_table",
        placeholder="",  # an empty cell, not "None"
    )
    if event.selection.rows:
        show_review_image(rows.iloc[event.selection.rows[0]])
    else:
        st.caption("Select a row to see its image with the model's Grad-CAM.")


def show_review_image(row: pd.Series) -> None:
    """One input, large, with the Grad-CAM of the model that scored it."""
    st.markdown(f"**{row['input']}** · label **{row['label'] or '–'}** · score **{_score(row['score'])}**")
    try:
        image = load_image(Path(row["input"]))
    except ImageDecodeError as error:
        st.warning(f"{row['input']} cannot be shown: {error.reason}")
        return
    left, right = st.columns(2)
    left.image(image, caption=f"{Path(row['input']).name} ({image.width}×{image.height})", width=420)
    if not model_from:
        return
    try:
        label, heatmap = gradcam_overlay(model_of_job(model_from), image, Path(row["input"]).name)
    except UserError as error:
        right.warning(str(error))
        return
    right.image(
        heatmap,
        caption=f"Grad-CAM for {label} (blue: little weight → red: most weight)",
        width=420,
    )


def _score(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.3f}"


bulk_view()

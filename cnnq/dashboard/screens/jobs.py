"""Jobs: the runs table, in the manner of MLflow: each job with the hyperparameters it used and its best
and test metrics, filtered, sorted and paged in SQL; a row (or its id) opens the job's page."""

from __future__ import annotations

import math

import streamlit as st

from cnnq.dashboard.queries import TIME_WINDOWS, any_running
from cnnq.dashboard.refresh import refresh_interval
from cnnq.dashboard.runs import METRIC_SUMMARIES, SORTS, RunFilter, count_runs, runs_page
from cnnq.dashboard.status_colors import status_style
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.tables import utcnow

PAGE_SIZES = (50, 100, 200)

st.title("Jobs")

filters = st.columns([3, 2, 2, 3, 2], vertical_alignment="bottom")
statuses = filters[0].multiselect("Status", [s.value for s in JobStatus], key="status_filter")
kinds = filters[1].multiselect("Kind", ["train", "eval", "infer", "sweep"], key="kind_filter")
window_name = filters[2].selectbox("Created", list(TIME_WINDOWS), index=len(TIME_WINDOWS) - 1, key="window")
search = filters[3].text_input("Search", placeholder="id, model, dataset, input…", key="search")
include_shards = filters[4].toggle(
    "Show shards", help="Also list each bulk job's shards, under their parent.", key="shards"
)
ordering = st.columns([2, 1, 1, 1, 3], vertical_alignment="bottom")
sort = ordering[0].selectbox("Sort by", SORTS, key="sort")
descending = ordering[1].toggle("Descending", value=True, key="descending")
page_size = ordering[2].selectbox("Rows per page", PAGE_SIZES, key="page_size")
requested_page = int(ordering[3].number_input("Page", min_value=1, value=1, step=1, key="page"))

with session_scope() as session:
    live = any_running(session)


@st.fragment(run_every=refresh_interval(live))
def jobs_table() -> None:
    window = TIME_WINDOWS[window_name]
    run_filter = RunFilter(
        statuses=[JobStatus(s) for s in statuses],
        kinds=kinds,
        since=utcnow() - window if window is not None else None,
        search=search,
        include_shards=include_shards,
    )
    with session_scope() as session:
        total = count_runs(session, run_filter)
        pages = max(1, math.ceil(total / page_size))
        page = min(requested_page, pages)
        frame = runs_page(
            session, run_filter, sort=sort, descending=descending, page=page, page_size=page_size
        )
        still_live = any_running(session)
    if still_live != live:
        st.rerun()  # start or stop the timer
    st.caption(
        f"{total:,} jobs · page {page} of {pages:,}" + (" · refreshing while jobs run" if live else "")
    )
    if frame.empty:
        st.info("No jobs match. Submit one with `cnnq submit train ...` or `cnnq run train ...`.")
        return
    shown = [c for c in frame.columns if c != "id" and (c in ("open", "status") or frame[c].notna().any())]
    event = st.dataframe(
        frame.style.map(status_style, subset=["status"]),
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="jobs_table",
        placeholder="",  # an empty cell, not "None"
        column_order=shown,
        column_config=column_config(),
    )
    if event.selection.rows:
        job_id = frame["id"].iloc[event.selection.rows[0]]
        st.switch_page("screens/job.py", query_params={"job": job_id})


def column_config() -> dict[str, object]:
    link = r"job=(.*)$"
    config: dict[str, object] = {
        "open": st.column_config.LinkColumn("job", display_text=link, help="Open the job's page"),
        "trained by": st.column_config.LinkColumn(
            "trained by", display_text=link, help="The training job whose model it used"
        ),
        "progress": st.column_config.ProgressColumn(
            "progress", min_value=0.0, max_value=1.0, format="percent", color="green"
        ),
        "dataset": st.column_config.TextColumn("dataset", width="small", help="An inference job's input"),
        "duration (s)": st.column_config.NumberColumn("duration (s)", format="%.1f"),
        "lr": st.column_config.NumberColumn("lr", format="%.2g"),
        "weight_decay": st.column_config.NumberColumn("weight_decay", format="%.2g"),
        "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
    }
    for name in METRIC_SUMMARIES:
        config[name] = st.column_config.NumberColumn(name, format="%.4f")
    return config


jobs_table()

"""Jobs: every job with its status and progress; a row opens the job's page."""

from __future__ import annotations

import streamlit as st

from cnnq.dashboard.queries import TIME_WINDOWS, any_running, jobs_frame
from cnnq.dashboard.refresh import refresh_interval
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus

st.title("Jobs")

filters = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
statuses = filters[0].multiselect("Status", [s.value for s in JobStatus], key="status_filter")
kinds = filters[1].multiselect("Kind", ["train", "eval", "infer"], key="kind_filter")
window_name = filters[2].selectbox("Created", list(TIME_WINDOWS), index=len(TIME_WINDOWS) - 1, key="window")
include_shards = filters[3].toggle("Show shards", help="Also list the shards of bulk jobs.", key="shards")

with session_scope() as session:
    live = any_running(session)


@st.fragment(run_every=refresh_interval(live))
def jobs_table() -> None:
    with session_scope() as session:
        frame = jobs_frame(
            session,
            statuses=[JobStatus(s) for s in statuses],
            kinds=kinds,
            window=TIME_WINDOWS[window_name],
            include_shards=include_shards,
        )
        still_live = any_running(session)
    if still_live != live:
        st.rerun()  # start or stop the timer
    if frame.empty:
        st.info("No jobs match. Submit one with `cnnq submit train ...` or `cnnq run train ...`.")
        return
    st.caption(f"{len(frame)} jobs" + (" · refreshing while jobs run" if live else ""))
    frame.insert(0, "open", "job?job=" + frame["id"])
    event = st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="jobs_table",
        column_order=["open", *[c for c in frame.columns if c not in ("open", "id")]],
        column_config={
            "open": st.column_config.LinkColumn("job", display_text=r"job=(.*)$", help="Open the job's page"),
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0.0, max_value=1.0, format="percent"
            ),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    if event.selection.rows:
        job_id = frame["id"].iloc[event.selection.rows[0]]
        st.switch_page("screens/job.py", query_params={"job": job_id})


jobs_table()

"""Workers: the registered workers with their hardware and heartbeat, and each Redis queue's depth."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from cnnq.dashboard.queries import job_queues, workers_frame
from cnnq.db.session import session_scope
from cnnq.lifecycle.broker import broker_problem, known_queues, queue_depths
from cnnq.lifecycle.queues import LOCAL_QUEUE
from cnnq.settings import get_settings, mask_url

st.title("Workers")
settings = get_settings()
st.caption(f"database `{mask_url(settings.database_url)}` · broker `{mask_url(settings.broker_url)}`")


@st.fragment(run_every=timedelta(seconds=5))
def workers_view() -> None:
    with session_scope() as session:
        workers = workers_frame(session, timedelta(seconds=settings.lost_after_seconds))
        queues = set(job_queues(session))
    alive = int((workers["state"] == "up").sum())
    st.subheader(f"Workers ({alive} up of {len(workers)})")
    if workers.empty:
        st.info("No worker has registered. Start one with `cnnq worker` (or `cnnq up`).")
    else:
        st.dataframe(
            workers,
            hide_index=True,
            width="stretch",
            key="workers_table",
            column_config={
                "last heartbeat": st.column_config.DatetimeColumn(
                    "last heartbeat", format="YYYY-MM-DD HH:mm:ss"
                ),
                "GPU memory (MiB)": st.column_config.NumberColumn(
                    "GPU memory (MiB)", help="Total memory of the worker's GPU, as it registered."
                ),
                "host RAM (MiB)": st.column_config.NumberColumn(
                    "host RAM (MiB)", help="Total memory of the worker's host (not what the worker uses)."
                ),
                "current job": st.column_config.TextColumn(
                    "current job", help="The job it is running now, if any."
                ),
            },
        )
    st.subheader("Queues")
    problem = broker_problem()
    if problem is not None:
        st.warning(f"{problem}: queue depths are unknown.")
        return
    queues = sorted((queues | set(known_queues())) - {LOCAL_QUEUE})
    depths = queue_depths(queues)
    if not queues:
        st.caption("No job has been sent to a queue yet.")
        return
    st.dataframe(
        pd.DataFrame({"queue": list(depths), "waiting messages": list(depths.values())}),
        hide_index=True,
        key="queues_table",
    )


workers_view()

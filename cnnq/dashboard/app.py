"""The Streamlit entry point: `streamlit run cnnq/dashboard/app.py` (what `cnnq dashboard` starts).

Each page is a script under `screens/` (a `pages/` folder would also be served by Streamlit's older
file-based navigation, bypassing this one). The pages read the job database through
`cnnq.dashboard.queries` and write only through the functions the CLI uses. With a dashboard
password set, the login form comes before everything else (`cnnq.dashboard.login`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cnnq.dashboard.login import logged_in, require_login

SCREENS = Path(__file__).resolve().parent / "screens"

st.set_page_config(page_title="cnnq", page_icon=":material/neurology:", layout="wide")

navigation = st.navigation(
    {
        "Jobs": [
            st.Page(SCREENS / "jobs.py", title="Jobs", icon=":material/list:", url_path="jobs", default=True),
            st.Page(SCREENS / "job.py", title="Job", icon=":material/monitoring:", url_path="job"),
            st.Page(
                SCREENS / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"
            ),
        ],
        "Inference": [
            st.Page(SCREENS / "bulk.py", title="Bulk scoring", icon=":material/stacks:", url_path="bulk"),
            st.Page(SCREENS / "xray.py", title="X-ray check", icon=":material/radiology:", url_path="xray"),
        ],
        "Cluster": [
            st.Page(SCREENS / "workers.py", title="Workers", icon=":material/dns:", url_path="workers"),
        ],
    },
    position="sidebar" if logged_in() else "hidden",
)
require_login()  # stops here, before any page runs, until the session has logged in
navigation.run()

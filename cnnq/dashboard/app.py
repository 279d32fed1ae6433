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

# An emoji icon is drawn in the page itself; a `:material/...:` one is fetched from a font CDN, which an
# air-gapped hospital network cannot reach.
st.set_page_config(page_title="cnnq", page_icon="🩻", layout="wide")

JOBS = st.Page(SCREENS / "jobs.py", title="Jobs", icon=":material/list:", url_path="runs", default=True)


def _jobs_alias() -> None:
    """`/jobs` (the default page is served at `/`, and reserves `/runs`): the same page, not a "Page not
    found" box."""
    st.switch_page(JOBS)


navigation = st.navigation(
    {
        "Jobs": [
            JOBS,
            st.Page(_jobs_alias, title="Jobs", url_path="jobs", visibility="hidden"),
            st.Page(SCREENS / "job.py", title="Job", icon=":material/monitoring:", url_path="job"),
            st.Page(
                SCREENS / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"
            ),
            st.Page(SCREENS / "sweeps.py", title="Sweeps", icon=":material/tune:", url_path="sweeps"),
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

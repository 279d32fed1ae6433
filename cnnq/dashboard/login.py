"""The dashboard's login form: with `CNNQ_DASHBOARD_PASSWORD` set, nothing else renders until it is entered.

The password is read from the server's own settings (its environment), compared in constant time,
and remembered per browser session in `st.session_state`. No page, fragment, chart, thumbnail or
cancel/retry button exists in a session before it has logged in: `app.py` hides the navigation
and calls `require_login()` before it runs the page.
"""

from __future__ import annotations

import hmac
import time

import streamlit as st

from cnnq.settings import get_settings

AUTHENTICATED = "cnnq_authenticated"
FAILED_LOGIN_DELAY_SECONDS = 1.0
"""A wrong password costs its session this long: guessing over the network stays slow."""


def password_matches(entered: str, expected: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of a guess was right."""
    return hmac.compare_digest(entered.encode(), expected.encode())


def logged_in() -> bool:
    """True when this session may see the dashboard: no password is set, or it has entered it."""
    return get_settings().dashboard_password is None or bool(st.session_state.get(AUTHENTICATED))


def require_login() -> None:
    """Return when this session may see the dashboard; otherwise show the login form and stop the run.

    Called after `st.navigation` (so the page asked for by URL is the one shown after logging in)
    and before the page runs.
    """
    password = get_settings().dashboard_password
    if password is None:
        return
    if st.session_state.get(AUTHENTICATED):
        if st.sidebar.button("Log out", key="cnnq_logout"):
            del st.session_state[AUTHENTICATED]
            st.rerun()
        return
    st.title("cnnq")
    with st.form("cnnq_login"):
        entered = st.text_input("Password", type="password", key="cnnq_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if password_matches(entered, password.get_secret_value()):
            st.session_state[AUTHENTICATED] = True
            st.rerun()
        time.sleep(FAILED_LOGIN_DELAY_SECONDS)
        st.error("Wrong password.")
    st.stop()

"""The dashboard's login form (CNNQ_DASHBOARD_PASSWORD), run with Streamlit's AppTest on a real, empty
job database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from cnnq.dashboard.login import password_matches
from tests.dashboard.conftest import APP

PASSWORD = "correct horse battery staple"
PAGES = [
    "screens/jobs.py",
    "screens/job.py",
    "screens/compare.py",
    "screens/bulk.py",
    "screens/xray.py",
    "screens/workers.py",
]
LOGIN_ELEMENTS = {"main", "sidebar", "title", "form", "text_input", "button"}
"""All a session sees before it logs in: no table, chart, image, metric or cancel/retry button."""


@pytest.fixture
def password_env(cnnq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from cnnq.settings import reload_settings

    monkeypatch.setenv("CNNQ_DASHBOARD_PASSWORD", PASSWORD)
    reload_settings()
    yield PASSWORD
    monkeypatch.delenv("CNNQ_DASHBOARD_PASSWORD")
    reload_settings()


def element_types(node: Any) -> set[str]:
    """The types of a node of AppTest's tree and of everything under it (blocks and elements)."""
    found = {node.type}
    for child in getattr(node, "children", {}).values():
        found |= element_types(child)
    return found


def shown(app: AppTest) -> set[str]:
    return element_types(app.main) | element_types(app.sidebar)


def log_in(app: AppTest, password: str) -> None:
    app.text_input(key="cnnq_password").input(password)
    [submit] = app.button
    submit.click()
    app.run()
    assert not app.exception, [e.value for e in app.exception]


def test_without_a_password_the_dashboard_opens_at_once(cnnq_env: dict[str, str]) -> None:
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert [t.value for t in app.title] == ["Jobs"]
    assert not app.text_input or "Password" not in [t.label for t in app.text_input]


@pytest.mark.parametrize("page", PAGES)
def test_with_a_password_every_page_shows_only_the_login_form(password_env: str, page: str) -> None:
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    if page != "screens/jobs.py":
        app.switch_page(page)
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert shown(app) == LOGIN_ELEMENTS, page
    assert [t.value for t in app.title] == ["cnnq"]
    assert [t.label for t in app.text_input] == ["Password"]
    assert [b.label for b in app.button] == ["Log in"]


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_page(password_env: str) -> None:
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    app.switch_page("screens/workers.py")
    app.run()

    log_in(app, PASSWORD + " ")
    assert [e.value for e in app.error] == ["Wrong password."]
    assert shown(app) == LOGIN_ELEMENTS | {"error"}

    log_in(app, "")
    assert shown(app) == LOGIN_ELEMENTS | {"error"}

    log_in(app, PASSWORD)
    assert [t.value for t in app.title] == ["Workers"]
    assert not app.error
    # The session stays logged in across reruns and pages.
    app.switch_page("screens/jobs.py")
    app.run()
    assert [t.value for t in app.title] == ["Jobs"]

    [logout] = [b for b in app.sidebar.button if b.label == "Log out"]
    logout.click()
    app.run()
    assert shown(app) == LOGIN_ELEMENTS


def test_an_empty_password_setting_means_no_password(
    cnnq_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnq.settings import reload_settings

    monkeypatch.setenv("CNNQ_DASHBOARD_PASSWORD", "")
    try:
        assert reload_settings().dashboard_password is None
    finally:
        monkeypatch.delenv("CNNQ_DASHBOARD_PASSWORD")
        reload_settings()


def test_password_matches_only_the_exact_password() -> None:
    assert password_matches(PASSWORD, PASSWORD)
    assert password_matches("pässwörd", "pässwörd")
    for guess in ("", PASSWORD[:-1], PASSWORD + "x", PASSWORD.upper()):
        assert not password_matches(guess, PASSWORD)

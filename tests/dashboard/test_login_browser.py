"""The login form end to end: `cnnq dashboard` with CNNQ_DASHBOARD_PASSWORD, in a real headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.dashboard.test_browser import _no_exception, browser_page, pytestmark, served_dashboard

__all__ = ["browser_page", "pytestmark"]

PASSWORD = "a dashboard password"


def _process_tree(root: int) -> list[int]:
    """`root` and every process under it (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


@pytest.fixture
def protected_dashboard(cnnq_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`cnnq dashboard` on 127.0.0.1 with a password, on an empty job database; its URL and pid."""
    env = {**os.environ, "CNNQ_DASHBOARD_PASSWORD": PASSWORD}
    with served_dashboard(env, tmp_path / "dashboard.log") as served:
        yield served


def test_the_login_form_guards_the_dashboard_in_a_browser(
    protected_dashboard: tuple[str, int], browser_page: Page
) -> None:
    url, pid = protected_dashboard
    for process in _process_tree(pid):
        with open(f"/proc/{process}/cmdline", "rb") as cmdline:
            assert PASSWORD.encode() not in cmdline.read()

    page = browser_page
    page.goto(f"{url}/workers")
    password = page.get_by_label("Password", exact=True)
    password.wait_for()
    assert page.get_by_role("heading", name="Workers", exact=True).count() == 0

    password.fill("not it")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong password.").wait_for()
    assert page.get_by_role("heading", name="Workers", exact=True).count() == 0

    password.fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Workers", exact=True).wait_for()
    _no_exception(page)
    # Streamlit removes the form a moment after it draws the page: fails if the form stays.
    page.get_by_label("Password", exact=True).wait_for(state="detached", timeout=15_000)

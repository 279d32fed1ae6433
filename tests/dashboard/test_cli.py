"""`cnnq dashboard`'s options (the browser test starts it for real)."""

from __future__ import annotations

from typing import Any


def test_dashboard_help_names_port_and_host(cli: Any) -> None:
    done = cli("dashboard", "--help")
    assert done.code == 0
    assert "--port" in done.stdout and "--host" in done.stdout


def test_dashboard_refuses_a_port_out_of_range(cli: Any) -> None:
    done = cli("dashboard", "--port", "70000")
    assert done.code == 2
    assert done.stderr.startswith("error:") and "--port" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

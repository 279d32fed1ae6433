"""`cnnq sweep`, `sweep show` and `sweep best` import neither torch nor Optuna: they read and write rows
(Optuna is imported only to record a sweep's study)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnq.sweeps.submit import submit_sweep
from tests.sweeps.test_trials import lenet_sweep

HEAVY = ("torch", "torchvision", "optuna", "pandas", "streamlit", "sklearn")

PROBE = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
atexit.register(lambda: json.dump([m for m in HEAVY if m in sys.modules], open(out, "w")))
from cnnq.cli.app import main
sys.exit(main(args))
""".replace("HEAVY", repr(HEAVY))


def probed(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    """Run the CLI in its own process: its exit code and the heavy libraries it imported."""
    report = tmp_path / "imported.json"
    done = subprocess.run([sys.executable, "-c", PROBE, str(report), *args], capture_output=True, timeout=120)
    return done.returncode, json.loads(report.read_text())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sweep_commands_import_neither_torch_nor_optuna(queue_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sweep_id = submit_sweep(lenet_sweep())
    assert probed(tmp_path, "--help") == (0, [])
    assert probed(tmp_path, "sweep", "--help") == (0, [])
    assert probed(tmp_path, "sweep", "show", sweep_id) == (0, [])
    assert probed(tmp_path, "sweep", "show", sweep_id, "--json") == (0, [])
    assert probed(tmp_path, "sweep", "best", sweep_id) == (1, [])  # no trial has succeeded yet
    refused = ("sweep", "--model", "lenet", "--dataset", "mnist", "--param", "lr=loguniform:1:0")
    assert probed(tmp_path, *refused) == (2, [])

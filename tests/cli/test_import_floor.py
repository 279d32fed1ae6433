"""Commands that run no model never import torch or the other heavy libraries; those that do, do.
Commands that only read and write rows never import SQLAlchemy's ORM either (`cnnq.db.orm`).

Each command runs as its own `python` process (the real CLI entry point, a real SQLite database and a
private Redis) and reports, as it exits, which of the libraries below it imported. A submit reads
the model zoo's table, the datasets' table and model files' metadata without torch
(`cnnq.models.catalog`, `cnnq.data.catalog`, `cnnq.jobs.model_info`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnq.jobs.checkpoint import ModelInfo, save_model_file
from cnnq.models.registry import build_model
from tests.sample_data import make_chest_xray, make_mnist

HEAVY = ("torch", "torchvision", "onnxruntime", "sklearn", "pandas", "streamlit")
ORM = "sqlalchemy.orm"
ROWS_ONLY = ("--help", "submit", "jobs", "show", "logs", "wait", "workers", "results", "retry", "cancel")
"""Commands that only read and write rows: Core statements on a connection, without the ORM's 60 ms
(`benchmarks/cli_latency.py`)."""

# Runs the CLI and writes the HEAVY libraries it imported, and whether Alembic and the ORM were, to argv[1].
PROBE = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
def report():
    loaded = [name for name in (*HEAVY, "alembic", "ORM") if name in sys.modules]
    with open(out, "w") as file:
        json.dump(loaded, file)
atexit.register(report)
from cnnq.cli.app import main
sys.exit(main(args))
""".replace("HEAVY", repr(HEAVY)).replace("ORM", ORM)


def run_probed(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    report = tmp_path / "imported.json"
    report.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args], capture_output=True, text=True, timeout=120
    )
    return done, json.loads(report.read_text())


@pytest.fixture
def env(use_settings, broker_url: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return use_settings(CNNQ_BROKER_URL=broker_url)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    info = ModelInfo("simple-cnn", 1, 32, ["NORMAL", "PNEUMONIA"], (0.5,), (0.25,), dataset="xray")
    network = build_model("simple-cnn", in_channels=1, image_size=32, num_classes=2)
    return save_model_file(tmp_path / "model" / "best.pt", network, info)


@pytest.fixture
def resnet18_weights(tmp_path: Path) -> Path:
    """torchvision's resnet18 state dict, as `--pretrained --weights FILE` takes it."""
    path = tmp_path / "resnet18-weights.pth"
    torch.save(build_model("resnet18", in_channels=3, image_size=224, num_classes=1000).state_dict(), path)
    return path


def test_commands_that_run_no_model_import_no_heavy_library(  # type: ignore[no-untyped-def]
    env, tmp_path: Path, model_file: Path, resnet18_weights: Path
) -> None:
    mnist = make_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    xray = make_chest_xray(tmp_path / "xray", per_class={"train": (4, 4), "test": (3, 3)}, size=32, corrupt=0)
    folder = xray / "test"
    image = next(folder.rglob("*.png"))
    offenders: dict[str, list[str]] = {}
    orm_users: list[str] = []

    def check(*args: str, code: int = 0) -> str:
        done, loaded = run_probed(tmp_path, *args)
        assert done.returncode == code and "Traceback" not in done.stderr, (args, done.stderr)
        if heavy := [name for name in loaded if name not in ("alembic", ORM)]:
            offenders[" ".join(args)] = heavy
        if ORM in loaded and args[0] in ROWS_ONLY:
            orm_users.append(" ".join(args))
        if args[0] == "submit" and code == 0:
            assert "alembic" not in loaded, f"`cnnq {' '.join(args)}` imported Alembic: the schema is new"
        return done.stdout

    def train(model: str, *more: str) -> list[str]:
        return ["submit", "train", "--model", model, "--dataset", "mnist", "--data-root", str(mnist), *more]

    job_id = json.loads(check(*train("lenet", "--epochs", "1", "--json")))["id"]
    bulk = ["submit", "infer", "--model-from", str(model_file), "--input", str(folder)]
    bulk_id = json.loads(check(*bulk, "--json"))["id"]
    sharded_id = json.loads(check(*bulk, "--shard-size", "2", "--json"))["id"]
    for args, code in [
        (["--help"], 0),
        (["submit", "--help"], 0),
        (["jobs"], 0),
        (["jobs", "--json", "--shards"], 0),
        (["show", job_id], 0),
        (["show", job_id, "--json"], 0),
        (["show", bulk_id], 0),
        (["logs", job_id], 0),
        (["wait", job_id, "--timeout", "0"], 124),
        (["workers"], 0),
        (["results", bulk_id], 0),
        (["models"], 0),
        (["models", "--json"], 0),
        (["db", "current"], 0),
        (["doctor", "--json"], 0),
        (["submit", "infer", "--model-from", str(model_file), "--input", str(image)], 0),
        (["submit", "infer", "--model-from", job_id, "--input", str(image)], 2),  # not SUCCEEDED
        (["submit", "eval", "--model-from", str(model_file), "--data-root", str(xray)], 0),
        (train("mnist-cnn", "--augment", "rotation=10", "--image-size", "32"), 0),
        (train("resnet18", "--pretrained", "--weights", str(resnet18_weights)), 0),
        (train("vgg11", "--pretrained", "--weights", str(resnet18_weights)), 2),  # not vgg11 weights
        (train("lenett"), 2),
        (["retry", job_id], 0),
        (["cancel", job_id], 0),
        (["cancel", f"{sharded_id}.0001"], 0),  # a bulk job's shard: its parent is settled, no sweep
    ]:
        check(*args, code=code)
    assert offenders == {}, f"these commands imported heavy libraries: {offenders}"
    assert orm_users == [], f"these commands imported {ORM}: {orm_users}"


def test_commands_that_run_a_model_import_torch_when_they_run(tmp_path: Path) -> None:
    done, loaded = run_probed(tmp_path, "models", "describe", "lenet")
    assert done.returncode == 0, done.stderr
    assert "torch" in loaded

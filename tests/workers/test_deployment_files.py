"""docker-compose.yml and the Dockerfile (Docker does not run here: their structure is checked)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import REPO

CNNQ_SERVICES = ("gpu-worker", "cpu-worker", "dashboard")


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_every_service() -> None:
    assert {"redis", "postgres", *CNNQ_SERVICES} <= set(compose()["services"])


def test_the_gpu_worker_reserves_nvidia_gpus_and_serves_them() -> None:
    worker = compose()["services"]["gpu-worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["command"][:2] == ["worker", "--gpus"]
    assert compose()["services"]["cpu-worker"]["command"][:2] == ["worker", "--cpu"]


def test_cnnq_services_share_the_artifact_volume_and_point_at_redis_and_postgres() -> None:
    services = compose()["services"]
    assert "artifacts" in compose()["volumes"]
    for name in CNNQ_SERVICES:
        service = services[name]
        assert "artifacts:/artifacts" in service["volumes"], name
        env = service["environment"]
        assert env["CNNQ_BROKER_URL"].startswith("redis://redis:"), name
        assert (
            env["CNNQ_DATABASE_URL"].startswith("postgresql+psycopg://")
            and "@postgres:" in env["CNNQ_DATABASE_URL"]
        )
        assert env["CNNQ_ARTIFACT_ROOT"] == "/artifacts"
        assert set(service["depends_on"]) == {"redis", "postgres"}


def test_the_dockerfile_installs_cnnq_and_runs_it() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "pip install ." in text and 'ENTRYPOINT ["cnnq"]' in text
    assert "CNNQ_ARTIFACT_ROOT=/artifacts" in text
    assert Path(REPO / "pyproject.toml").is_file()

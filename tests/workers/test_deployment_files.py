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


def _strings(node: object) -> list[str]:
    """Every string in a parsed YAML tree (keys included)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_compose_publishes_ports_on_loopback_only() -> None:
    published = {
        name: service.get("ports", [])
        for name, service in compose()["services"].items()
        if service.get("ports")
    }
    assert published, "the dashboard's port should be published"
    for name, ports in published.items():
        for port in ports:
            # The short form "HOST_IP:HOST_PORT:CONTAINER_PORT", or the long form with host_ip.
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                assert str(port).startswith("127.0.0.1:") and str(port).count(":") == 2, (name, port)
    assert published["dashboard"] == ["127.0.0.1:8501:8501"]


def test_compose_has_no_fallback_password_and_requires_one() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert ":-cnnq" not in text
    uses = [s for s in _strings(compose()) if "POSTGRES_PASSWORD" in s and "${" in s]
    assert len(uses) >= 2  # postgres itself and the workers' database URL
    for value in uses:
        assert "${POSTGRES_PASSWORD:?" in value and "${POSTGRES_PASSWORD:-" not in value, value
    services = compose()["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name in CNNQ_SERVICES:
        assert "${POSTGRES_PASSWORD:?" in services[name]["environment"]["CNNQ_DATABASE_URL"], name


def test_the_compose_dashboard_listens_on_all_container_addresses_with_a_required_password() -> None:
    dashboard = compose()["services"]["dashboard"]
    command = dashboard["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert dashboard["environment"]["CNNQ_DASHBOARD_PASSWORD"].startswith("${CNNQ_DASHBOARD_PASSWORD:?")
    # Only the dashboard gets it; workers have no use for it.
    for name in ("gpu-worker", "cpu-worker"):
        assert "CNNQ_DASHBOARD_PASSWORD" not in compose()["services"][name]["environment"], name

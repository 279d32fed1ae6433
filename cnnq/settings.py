"""All of cnnq's configuration, read once from `CNNQ_*` environment variables.

No other module reads the environment for configuration: they call `get_settings()`.
The defaults work on one machine with nothing set: SQLite and artifacts under `~/.cnnq`,
Redis on localhost.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CNNQ_", extra="ignore")

    home: Path = Field(default=Path.home() / ".cnnq", description="Where cnnq keeps its own files.")
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL of the Celery broker.")
    database_url: str = Field(
        default="", description="SQLAlchemy URL of the job database (default: SQLite under the home)."
    )
    data_root: Path | None = Field(default=None, description="Where datasets live (default: HOME/data).")
    artifact_root: Path | None = Field(
        default=None,
        description="Checkpoints and results; must be shared by all workers (default: HOME/artifacts).",
    )

    heartbeat_seconds: float = Field(default=5.0, description="How often workers and running jobs beat.")
    lost_after_seconds: float = Field(
        default=60.0, description="A running job whose heartbeat is older than this is lost and re-queued."
    )
    visibility_timeout_seconds: int = Field(
        default=7 * 24 * 3600,
        description="Redis redelivers an unacknowledged message after this; longer than any job.",
    )
    max_attempts: int = Field(default=3, description="Deliveries of one job before it is failed for good.")
    cancel_poll_seconds: float = Field(default=1.0, description="How often a running job checks for cancel.")
    torch_threads: int = Field(
        default=0,
        description="Torch threads per job process (0: the cores this process may use / jobs per host).",
    )
    dashboard_port: int = Field(default=8501, description="Port of the Streamlit dashboard.")
    cancel_grace_seconds: float = Field(
        default=10.0, description="A job that ignores a cancel request this long is stopped by its worker."
    )
    standby_process: bool = Field(
        default=True,
        description="Keep the next job's process started (torch imported) while a worker waits; "
        "costs one idle process's memory per worker.",
    )

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        self.home = self.home.expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'cnnq.db'}"
        if self.data_root is None:
            self.data_root = self.home / "data"
        if self.artifact_root is None:
            self.artifact_root = self.home / "artifacts"
        self.data_root = self.data_root.expanduser()
        self.artifact_root = self.artifact_root.expanduser()
        return self

    @property
    def data_dir(self) -> Path:
        assert self.data_root is not None
        return self.data_root

    @property
    def artifact_dir(self) -> Path:
        assert self.artifact_root is not None
        return self.artifact_root


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reload_settings() -> Settings:
    """Forget the cached settings (tests and `cnnq` commands that change the environment)."""
    get_settings.cache_clear()
    return get_settings()


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to print or log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

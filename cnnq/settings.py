"""All of cnnq's configuration, read once from `CNNQ_*` environment variables.

No other module reads the environment for configuration: they call `get_settings()`.
The defaults work on one machine with nothing set: SQLite and artifacts under `~/.cnnq`,
Redis on localhost.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote_plus

from pydantic import Field, SecretStr, field_validator, model_validator
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
    requeue_after_seconds: float = Field(
        default=60.0,
        description="A queued job that no worker claimed this long after its message was sent, and whose "
        "message waits in no queue (lost with a worker or a wiped Redis), is sent again.",
    )
    db_outage_seconds: float = Field(
        default=300.0,
        description="How long a running job and a worker wait out a database outage before the job stops "
        "(re-queued, not failed).",
    )
    stall_seconds: float = Field(
        default=900.0,
        description="A running job whose process reported nothing this long is stopped and re-queued.",
    )
    cancel_poll_seconds: float = Field(default=1.0, description="How often a running job checks for cancel.")
    torch_threads: int = Field(
        default=0,
        description="Torch threads per job process (0: the cores this process may use / jobs per host).",
    )
    dashboard_port: int = Field(default=8501, description="Port of the Streamlit dashboard.")
    max_image_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description="An input image (or DICOM) whose header declares more pixels than this is refused "
        "before it is decoded: a flagged row, a skipped training file, a refused upload.",
    )
    dashboard_host: str = Field(
        default="127.0.0.1",
        description="Address the dashboard listens on; any non-loopback one needs a dashboard password.",
    )
    dashboard_password: SecretStr | None = Field(
        default=None,
        description="Password of the dashboard's login form; required to serve it beyond this host.",
    )
    cancel_grace_seconds: float = Field(
        default=10.0, description="A job that ignores a cancel request this long is stopped by its worker."
    )
    shard_seconds: float = Field(
        default=30.0,
        gt=0,
        description="`--shard-size auto` (the default) sizes a bulk job's shards to about this many seconds "
        "of scoring each, at the speed its first shard measured (fewer seconds when that would leave a "
        "live worker without a share).",
    )
    standby_process: bool = Field(
        default=True,
        description="Keep the next job's process started (torch imported) while a worker waits; "
        "costs one idle process's memory per worker.",
    )
    job_process_max_mb: float = Field(
        default=4096.0,
        ge=0,
        description="A job process holding more memory than this after a job is replaced by a fresh one "
        "(0: no ceiling).",
    )
    job_process_max_jobs: int = Field(
        default=100,
        ge=0,
        description="Jobs one job process runs before it is replaced by a fresh one (0: no limit).",
    )
    cache_memory: int = Field(
        default_factory=lambda: memory_bytes() // 4,
        ge=0,
        description="A folder or X-ray set whose decoded images fit in this many bytes is decoded once "
        "and trained from memory; a larger one is decoded every epoch by DataLoader workers. Bytes, or "
        "a size such as 512MiB or 4GB (default: a quarter of this host's memory; 0: always stream).",
    )

    @field_validator("cache_memory", mode="before")
    @classmethod
    def _size_in_bytes(cls, value: object) -> object:
        return parse_bytes(value) if isinstance(value, str) else value

    @field_validator("dashboard_password", mode="before")
    @classmethod
    def _empty_password_is_none(cls, value: object) -> object:
        """`CNNQ_DASHBOARD_PASSWORD=` (empty) means no password, not an empty one that anyone can type."""
        return None if value == "" else value

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


_SECRET_PARAMETER = re.compile(r"pass|pwd|token|secret|key|credential|auth|signature", re.IGNORECASE)
"""Query parameters whose value is masked: `password`, `passwd`, `pwd`, `access_token`, `api_key`, ..."""


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where the secrets of a URL are: its userinfo password and secret-looking query values.

    Read from the text itself rather than through `urlsplit` so that what is printed is the URL as
    given, and so that a password holding `/` or `@` (which SQLAlchemy accepts) is masked whole.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        return []
    start = scheme_end + 3
    ends = [i for i in (url.find("?", start), url.find("#", start)) if i >= 0]
    authority_end = min(ends, default=len(url))
    spans = []
    at = url.rfind("@", start, authority_end)
    if at >= 0:
        colon = url.find(":", start, at)
        if 0 <= colon < at - 1:
            spans.append((colon + 1, at))
    query_start = url.find("?", max(at, start))
    if query_start >= 0:
        fragment = url.find("#", query_start)
        query_end = fragment if fragment >= 0 else len(url)
        position = query_start + 1
        for pair in url[position:query_end].split("&"):
            name, equals, value = pair.partition("=")
            if equals and value and _SECRET_PARAMETER.search(unquote_plus(name)):
                value_start = position + len(name) + 1
                spans.append((value_start, value_start + len(value)))
            position += len(pair) + 1
    return spans


def mask_url(url: str) -> str:
    """The URL with its password and secret query parameters (`?password=`, `token=`, ...) as `***`.

    Every URL cnnq prints or logs goes through this.
    """
    for begin, end in reversed(_secret_spans(url)):
        url = f"{url[:begin]}***{url[end:]}"
    return url


def url_secrets(url: str) -> list[str]:
    """The secrets `mask_url` hides, as written and percent-decoded: to scrub them from free text
    (a library's error message that quotes the URL its own way)."""
    found: list[str] = []
    for begin, end in _secret_spans(url):
        raw = url[begin:end]
        found += [raw] if unquote_plus(raw) == raw else [raw, unquote_plus(raw)]
    return found


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_BYTE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """`4GiB`, `512MB`, `1.5G`, `1000000` -> bytes (K, M, G, T decimal; with `i`, powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a number of bytes or a size such as 512MiB or 4GB, not {text!r}")
    number, prefix, binary = match.groups()
    prefix = prefix.lower()
    unit = 1024 ** "bkmgt".index(prefix) if binary and prefix else _BYTE_UNITS[prefix]
    return int(float(number) * unit)


def format_bytes(count: float) -> str:
    """1536 -> `1.5 KiB`: binary units, as `parse_bytes` reads them back."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def memory_bytes() -> int:
    """This host's memory, or the cgroup's limit when a container sets a smaller one."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total

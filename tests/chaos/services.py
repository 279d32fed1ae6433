"""The services the chaos tests break on purpose: a private PostgreSQL cluster and a durable redis-server.

Both are real servers on free ports of 127.0.0.1, with their files in a temporary folder, so that a test
may stop, crash, wipe and restart them without touching the shared servers other tests use.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from tests.conftest import free_port

QUEUES = ("default", "cpu", "gpu")
"""The queues the chaos tests' jobs can be on (`cnnq submit --device cpu` sends to `cpu`)."""


def _port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4].split(".")[0])
    )
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own: `initdb` in a temporary folder, served on 127.0.0.1:`port` only.

    Trust authentication and no fsync (tests only: the host never crashes, only the server does, and
    a commit still reaches the kernel before it returns). `synchronous_commit` stays on: with it off,
    an immediate stop would lose commits a client already saw, which no real server does. When the
    tests run as root, the server runs as the `postgres` user (PostgreSQL refuses root), so its
    folder is made outside pytest's private tmp (whose parents only root may enter) and handed over.
    """

    def __init__(self) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        self.bin = binaries
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cnnq-chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        """The admin URL (database `postgres`); `create_database` gives a test its own."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self.root)
        if check and done.returncode != 0:
            what = f"{tool} {' '.join(args)}"
            raise RuntimeError(f"{what} failed: {done.stdout}{done.stderr}{self._log_tail()}")
        return done

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n" + self.log.read_text()[-2000:]
        return ""

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                  "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m MODE` (immediate: like a crash, clients are cut off at once)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def create_database(self) -> str:
        """A new, empty database on this cluster; returns its URL."""
        name = f"cnnq_chaos_{uuid.uuid4().hex[:10]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        """One statement outside a transaction, on the cluster's maintenance database."""
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(statement))
        finally:
            admin.dispose()

    def destroy(self) -> None:
        """Stop the server (whatever state it is in) and remove its files."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _queue_keys(queues: tuple[str, ...]) -> list[str]:
    """kombu's Redis lists for these queues: `q`, then `q:1` ... `q:9` for the priority steps."""
    return [queue if step == 0 else f"{queue}:{step}" for queue in queues for step in range(10)]


def _job_id_of(raw: bytes) -> str:
    """The job id a Celery message carries (its first argument), or `?` if it cannot be read."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return "?"


class DurableRedis:
    """A redis-server that keeps an append-only file (fsync on every write) in its own folder.

    `crash()` kills it with SIGKILL; `start()` again on the same port and folder replays the file.
    `wipe()` is FLUSHALL: every queued message gone, as after a failover to an empty replica.
    """

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        command = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def answers(self) -> bool:
        import redis

        if not _port_answers(self.port):
            return False
        try:
            return bool(self.client().ping())
        except redis.RedisError:  # e.g. still loading its append-only file
            return False

    def crash(self) -> None:
        """SIGKILL: no shutdown, no final save; what is on disk is what the append-only file holds."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def wipe(self) -> None:
        self.client().flushall()

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def waiting(self, queues: tuple[str, ...] = QUEUES) -> int:
        """Messages waiting in the queue lists (every priority step of each queue)."""
        client = self.client()
        return sum(int(client.llen(key)) for key in _queue_keys(queues))

    def waiting_jobs(self, queues: tuple[str, ...] = QUEUES) -> Counter[str]:
        """The job ids of the messages waiting in the queue lists, with how many messages each has."""
        client = self.client()
        found: Counter[str] = Counter()
        for key in _queue_keys(queues):
            for raw in client.lrange(key, 0, -1):
                found[_job_id_of(raw)] += 1
        return found

    def unacked_jobs(self) -> Counter[str]:
        """The job ids of the messages delivered to a worker and not acknowledged yet."""
        found: Counter[str] = Counter()
        for raw in self.client().hvals("unacked"):
            with contextlib.suppress(ValueError, IndexError, TypeError):
                found[_job_id_of(json.dumps(json.loads(raw)[0]).encode())] += 1
        return found

    def unacked(self) -> int:
        """Messages delivered to a worker and not acknowledged yet (kombu's `unacked` hash)."""
        return int(self.client().hlen("unacked"))

    def stop(self) -> None:
        self.crash()

"""Real `cnnq worker` processes and the faults a test deals them: SIGKILL of their process groups,
SIGSTOP / SIGCONT, signals as a terminal sends them. Processes are read from /proc (Linux only).

A `cnnq worker --cpu` supervisor starts Celery worker processes; each runs its jobs in a child job
process (and keeps a standby one). Celery processes and job processes may each lead a process group
of their own, so killing "a worker" means killing every process group of its process tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running or stopped; not gone, not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def stopped(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] in ("T", "t")


def process_group(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[2]) if fields else None


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of `pid` so far, in clock ticks (0 if it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def signal_pids(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def kill_process_groups(pids: Iterable[int], signum: int = signal.SIGKILL) -> set[int]:
    """`killpg` every process group these processes are in, then each process itself; returns the groups."""
    pids = list(pids)
    groups = {group for group in (process_group(pid) for pid in pids) if group and group > 1}
    groups.discard(os.getpgrp())  # never the test runner's own group
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)
    signal_pids(pids, signum)
    return groups


def busiest(pids: list[int], sample_seconds: float = 0.6) -> int | None:
    """Of these processes, the one that used most CPU over a short sample (the one running a job,
    rather than an idle standby)."""
    pids = [pid for pid in pids if alive(pid)]
    if len(pids) <= 1:
        return pids[0] if pids else None
    before = {pid: cpu_ticks(pid) for pid in pids}
    time.sleep(sample_seconds)
    return max(pids, key=lambda pid: cpu_ticks(pid) - before[pid])


def _is_helper(pid: int) -> bool:
    """multiprocessing's resource tracker (or forkserver), not a job process."""
    line = cmdline(pid)
    return "resource_tracker" in line or "forkserver" in line


def faketime_env(offset: str) -> dict[str, str]:
    """Environment that shifts a process's wall clock by `offset` (like "+1h") with libfaketime;
    inherited by every process it starts. The monotonic clock is left alone."""
    return {
        "LD_PRELOAD": str(FAKETIME_LIBRARY),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }


@dataclass
class WorkerProcess:
    """One `cnnq worker ...` supervisor started by a test, and its process tree."""

    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tree(self) -> list[int]:
        """The supervisor and every process below it (Celery workers, job processes, standbys)."""
        return [self.pid, *descendants(self.pid)] if alive(self.pid) else descendants(self.pid)

    def celery_pids(self, database_url: str) -> list[int]:
        """Its registered Celery worker processes (rows of the `workers` table named `...-<pid>@host`)."""
        from tests.chaos.rows import live_worker_rows

        return [pid for name, pid in live_worker_rows(database_url) if f"-{self.pid}@" in name]

    def celery_names(self, database_url: str) -> list[str]:
        from tests.chaos.rows import live_worker_rows

        return [name for name, _ in live_worker_rows(database_url) if f"-{self.pid}@" in name]

    def job_processes(self, celery_pid: int) -> list[int]:
        """The job processes (running or standby) under one Celery worker process."""
        return [pid for pid in children(celery_pid) if alive(pid) and not _is_helper(pid)]

    def running_job_process(self, celery_pid: int) -> int | None:
        """The job process that is running a job under `celery_pid` (the busiest of its children)."""
        return busiest(self.job_processes(celery_pid))

    def running(self) -> bool:
        return self.process.poll() is None

    def kill_hard(self) -> set[int]:
        """SIGKILL every process group of the worker's tree: the supervisor, its Celery processes
        and their job processes die at once, whichever groups they lead."""
        groups = kill_process_groups(self.tree(), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        return groups

    def pause(self) -> list[int]:
        """SIGSTOP the whole tree (as a VM pause or a partition that freezes the host would)."""
        pids = self.tree()
        signal_pids(pids, signal.SIGSTOP)
        return pids

    def resume(self, pids: Iterable[int] | None = None) -> None:
        signal_pids(self.tree() if pids is None else pids, signal.SIGCONT)

    def signal(self, signum: int) -> None:
        """To the supervisor alone (as `kill PID`, `docker stop` or a Kubernetes eviction would)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def signal_terminal_group(self, signum: int) -> None:
        """To the supervisor's process group, as a terminal sends Ctrl-C to its foreground job."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def wait_exit(self, timeout: float) -> int | None:
        """The supervisor's exit code, or None if it still runs after `timeout` seconds."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self, last: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-last:]
        return ""

    def cleanup(self) -> None:
        pids = self.tree()
        signal_pids(pids, signal.SIGCONT)
        kill_process_groups(pids, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def launch_worker(
    log: Path, env: dict[str, str], args: tuple[str, ...] = ("--cpu",), *, prefix: list[str] | None = None
) -> WorkerProcess:
    """Start `cnnq worker ARGS` in a new session (its own process group, as a shell's job would be)."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "cnnq", "worker", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    return WorkerProcess(process, log, env)

"""The process a job runs in: spawned fresh per job, so a GPU's memory is freed when it exits.

A worker keeps one such process on standby: spawned (never forked: the parent's CUDA and database
state must not leak in) and non-daemonic (so the job may start DataLoader workers), it imports torch
and the job code while the current job runs or the worker waits for a message, then runs the one job
it is sent. The next job so skips the seconds that a cold start costs (about 9 s on a busy 2-core
host: torch, torchvision, onnxruntime, scikit-learn). Importing torch does not initialise CUDA.

It dies with its worker: the kernel sends it SIGKILL when the parent dies (PR_SET_PDEATHSIG), and a
watcher thread exits if the parent changes anyway (the signal is lost if the parent died before it
was set). It runs in its own process group, and stops its job cooperatively on SIGTERM (from its worker).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

_PR_SET_PDEATHSIG = 1
PRELOADED = (
    "cnnq.jobs.train",
    "cnnq.jobs.evaluate",
    "cnnq.jobs.infer",
    "cnnq.jobs.onnx_engine",
    "cnnq.jobs.int8_engine",
    "cnnq.data.registry",
    "cnnq.models.registry",
)
"""Imported by a standby job process before its job arrives: torchvision, onnxruntime, the job code."""


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="cnnq-parent-watch", daemon=True).start()


def prepare_job_process() -> None:
    """Set a fresh job process up before its job: torch's threads, how it starts children, imports.

    A spawned process spawns its own children too, so every DataLoader worker would import torch
    afresh (seconds per shard, and per epoch of a folder set). They only decode images: fork them.
    """
    if sys.platform.startswith("linux"):
        multiprocessing.set_start_method("fork", force=True)
    from cnnq.settings import get_settings

    threads = get_settings().torch_threads
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    for module in PRELOADED:
        importlib.import_module(module)


def job_process_main(link: Connection, worker: str, parent_pid: int) -> None:
    """The job process: its own process group (a terminal's Ctrl-C or a `kill` of the worker's group
    reaches its worker, which then asks it to stop), SIGTERM asks its job to stop at the next check and
    go back to the queue, SIGINT is left to the worker."""
    die_with_parent(parent_pid)
    os.setpgid(0, 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_job_process()
    from cnnq.db.outage import DatabaseUnavailable
    from cnnq.lifecycle.claim import EXIT_DATABASE_LOST, execute_job

    try:
        job_id = link.recv()
    except EOFError:  # the worker stopped without giving it a job
        return
    try:
        execute_job(job_id, worker=worker, on_claim=lambda claim: link.send(claim.token), stop=stop)
    except DatabaseUnavailable as error:
        print(f"cnnq job {job_id}: {error}; its worker re-queues it", file=sys.stderr, flush=True)
        sys.exit(EXIT_DATABASE_LOST)
    finally:
        link.close()


class JobProcess:
    """A job process started ahead of its job: `run` hands it the job id, `claim_token` reads back the
    claim it took (the token the worker fences its own decisions on)."""

    def __init__(self, worker: str) -> None:
        context = multiprocessing.get_context("spawn")
        child_end, self._link = context.Pipe(duplex=True)
        self.process: BaseProcess = context.Process(
            target=job_process_main, args=(child_end, worker, os.getpid()), name="cnnq-job", daemon=False
        )
        self.process.start()
        child_end.close()
        self.token: int | None = None

    def run(self, job_id: str) -> JobProcess:
        """Send it the job; raises OSError if the process has died meanwhile."""
        self._link.send(job_id)
        return self

    def claim_token(self) -> int | None:
        """The claim its job took, once it has (None before, or if it took none)."""
        if self.token is None:
            with contextlib.suppress(OSError, EOFError):
                if self._link.poll():
                    self.token = int(self._link.recv())
        return self.token

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(self.process.pid, signum)  # type: ignore[arg-type]

    def discard(self) -> None:
        """Stop an unused standby at once (it holds no job) and reap it."""
        self._link.close()
        self.process.kill()
        self.process.join(timeout=10)


def start_job_process(job_id: str, worker: str, standby: JobProcess | None = None) -> JobProcess:
    """The process running `job_id`: the standby if it is still alive, else a fresh one."""
    if standby is not None:
        if standby.process.is_alive():
            with contextlib.suppress(OSError):
                return standby.run(job_id)
        standby.discard()
    return JobProcess(worker).run(job_id)

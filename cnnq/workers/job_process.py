"""The process a job runs in: spawned fresh per job, so a GPU's memory is freed when it exits.

A worker keeps one such process on standby: spawned (never forked: the parent's CUDA and database
state must not leak in) and non-daemonic (so the job may start DataLoader workers), it imports torch
and the job code while the worker waits for a message, then runs the one job it is sent. The next
job so skips the seconds that a cold start costs. Importing torch does not initialise CUDA.

It dies with its worker: the kernel sends it SIGKILL when the parent dies (PR_SET_PDEATHSIG), and a
watcher thread exits if the parent changes anyway (the signal is lost if the parent died before it
was set).
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


def job_process_main(orders: Connection, worker: str, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    prepare_job_process()
    from cnnq.workers.execution import execute_job

    try:
        job_id = orders.recv()
    except EOFError:  # the worker stopped without giving it a job
        return
    finally:
        orders.close()
    execute_job(job_id, worker=worker)


class JobProcess:
    """A job process started ahead of its job; `run` hands it the job id."""

    def __init__(self, worker: str) -> None:
        context = multiprocessing.get_context("spawn")
        receiver, self._orders = context.Pipe(duplex=False)
        self.process: BaseProcess = context.Process(
            target=job_process_main, args=(receiver, worker, os.getpid()), name="cnnq-job", daemon=False
        )
        self.process.start()
        receiver.close()

    def run(self, job_id: str) -> BaseProcess:
        """Send it the job; raises OSError if the process has died meanwhile."""
        try:
            self._orders.send(job_id)
        finally:
            self._orders.close()
        return self.process

    def discard(self) -> None:
        """Let an unused standby exit (it reads end-of-file) and reap it."""
        self._orders.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def start_job_process(job_id: str, worker: str, standby: JobProcess | None = None) -> BaseProcess:
    """The process running `job_id`: the standby if it is still alive, else a fresh one."""
    if standby is not None:
        if standby.process.is_alive():
            with contextlib.suppress(OSError):
                return standby.run(job_id)
        standby.discard()
    return JobProcess(worker).run(job_id)

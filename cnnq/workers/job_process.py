"""The process a job runs in: spawned fresh per job, so a GPU's memory is freed when it exits.

It dies with its worker: the kernel sends it SIGKILL when the parent dies (PR_SET_PDEATHSIG), and a
watcher thread exits if the parent changes anyway (the signal is lost if the parent died before it
was set).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


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


def job_process_main(job_id: str, worker: str, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    from cnnq.settings import get_settings

    threads = get_settings().torch_threads
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    from cnnq.workers.execution import execute_job

    execute_job(job_id, worker=worker)


def start_job_process(job_id: str, worker: str) -> multiprocessing.process.BaseProcess:
    """Spawn (never fork: the parent's CUDA and DB state must not leak in) a non-daemonic job process,
    so that the job may start its own DataLoader workers."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=job_process_main, args=(job_id, worker, os.getpid()), name=f"cnnq-job-{job_id}", daemon=False
    )
    process.start()
    return process

"""The process jobs run in: one per worker, reused from job to job while it stays healthy.

A job process is spawned (never forked: the parent's CUDA and database state must not leak in) and
non-daemonic (so a job may start DataLoader workers). It imports torch and the job code before its
first job arrives, then runs the jobs its worker sends it one at a time, keeping the last model and
engine it loaded (`cnnq.jobs.model_cache`): on a warm worker a job starts in milliseconds, and a
shard of a bulk job whose model is loaded goes straight to decoding. A cold start costs about 9 s on
a busy 2-core host (torch, torchvision, onnxruntime, scikit-learn). Importing torch does not
initialise CUDA; CUDA is only ever initialised here, never in the worker.

Its worker replaces it (`JobProcess.unfit_reason`) after a job that failed, or that it did not end
by itself (a crash, a cancel-kill, a stall, a timeout, a stop), and when its memory is above
`CNNQ_JOB_PROCESS_MAX_MB` after a job: a crash so takes only the job it was running with it, and the
next job runs in a fresh process. After `CNNQ_JOB_PROCESS_MAX_JOBS` jobs it is replaced too, but only
once its successor has imported everything, so short jobs never wait for a cold start.

It dies with its worker: the kernel sends it SIGKILL when the parent dies (PR_SET_PDEATHSIG), and a
watcher thread exits if the parent changes anyway (the signal is lost if the parent died before it
was set). It runs in its own process group, and stops its job cooperatively on SIGTERM (from its
worker), then exits.

What it tells its worker: `("ready", None)` once it can start a job at once; then, for each job,
`("claimed", token)` once it holds the job's claim
(the token the worker fences its own decisions on), then `("ended", (status, rss_mb))` once the job
has ended and recorded how.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
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
"""Imported by a job process before its first job arrives: torchvision, onnxruntime, the job code."""


def die_with_parent(signum: int, parent_pid: int | None = None) -> None:
    """Have the kernel send this process `signum` when its parent dies (Linux). With `parent_pid`, also
    exit if that parent is gone already or goes later (the signal is lost if it died before it was set):
    a watcher thread, so not for a `preexec_fn`, whose threads the `exec` ends."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if parent_pid is None:
        return
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
    # The imports leave about 450,000 objects that live as long as the process: out of the collector's
    # sight, the collection between jobs takes milliseconds instead of 0.2-0.6 s.
    gc.freeze()


def resident_mb() -> float:
    """This process's resident memory now (its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _connect_early() -> None:
    """Open the database connection and configure the ORM before the first job arrives, so that its
    claim does not pay for them (about half a second). A database that is out now is waited out by
    the claim, as ever."""
    from sqlalchemy import select
    from sqlalchemy.orm import configure_mappers

    from cnnq.db.orm import Job
    from cnnq.db.session import session_scope

    configure_mappers()
    with contextlib.suppress(Exception), session_scope() as session:
        session.execute(select(Job.id).limit(1)).all()


def _between_jobs() -> None:
    """Give back what the last job held and no cache keeps: its tensors, the heap pages its steps
    kept for reuse (`cnnq.jobs.allocator`), and CUDA's cached blocks."""
    from cnnq.jobs.allocator import give_back_freed_memory

    gc.collect()
    give_back_freed_memory()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def job_process_main(link: Connection, worker: str, parent_pid: int) -> None:
    """The job process: its own process group (a terminal's Ctrl-C or a `kill` of the worker's group
    reaches its worker, which then asks it to stop), SIGTERM asks its job to stop at the next check and
    go back to the queue, SIGINT is left to the worker."""
    die_with_parent(signal.SIGKILL, parent_pid)
    os.setpgid(0, 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_job_process()
    from cnnq.db.outage import DatabaseUnavailable
    from cnnq.lifecycle.claim import EXIT_DATABASE_LOST, Claim, execute_job

    _connect_early()
    link.send(("ready", None))

    def report_claim(claim: Claim) -> None:
        link.send(("claimed", claim.token))

    try:
        while not stop.is_set():
            try:
                job_id = link.recv()
            except EOFError:  # its worker stopped or replaced it
                return
            try:
                status = execute_job(job_id, worker=worker, on_claim=report_claim, stop=stop)
            except DatabaseUnavailable as error:
                print(f"cnnq job {job_id}: {error}; its worker re-queues it", file=sys.stderr, flush=True)
                sys.exit(EXIT_DATABASE_LOST)
            _between_jobs()
            link.send(("ended", (None if status is None else str(status), resident_mb())))
    finally:
        link.close()


class JobProcess:
    """A job process, started ahead of its first job. `run` hands it a job id; `claim_token` and
    `ended` read back what it reported of that job."""

    def __init__(self, worker: str) -> None:
        context = multiprocessing.get_context("spawn")
        child_end, self._link = context.Pipe(duplex=True)
        self.process: BaseProcess = context.Process(
            target=job_process_main, args=(child_end, worker, os.getpid()), name="cnnq-job", daemon=False
        )
        self.process.start()
        child_end.close()
        self.ready = False
        """Whether it has imported the job code and can start a job at once."""
        self.jobs = 0
        """Jobs sent to it so far."""
        self.token: int | None = None
        self.ended = False
        self.status: str | None = None
        """The status its last job ended in, as it reported it (None: superseded, or not ended)."""
        self.resident_mb: float | None = None

    def run(self, job_id: str) -> JobProcess:
        """Send it a job; raises OSError if the process has died meanwhile."""
        self.token, self.ended, self.status = None, False, None
        self._link.send(job_id)
        self.jobs += 1
        return self

    def _read(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            while self._link.poll():
                what, value = self._link.recv()
                if what == "ready":
                    self.ready = True
                elif what == "claimed":
                    self.token = int(value)
                elif what == "ended":
                    self.ended, (self.status, self.resident_mb) = True, value

    def claim_token(self) -> int | None:
        """The claim its current job took, once it has (None before, or if it took none)."""
        self._read()
        return self.token

    def done(self) -> bool:
        """Whether its current job has ended: reported so, or the process is gone."""
        self._read()
        return self.ended or not self.process.is_alive()

    def wait(self, timeout: float) -> None:
        """Wait until it reports something or exits, at most `timeout` seconds."""
        with contextlib.suppress(OSError):
            wait([self._link, self.process.sentinel], timeout)

    def is_ready(self) -> bool:
        self._read()
        return self.ready and self.process.is_alive()

    def unfit_reason(self, max_mb: float) -> str | None:
        """Why it must not run another job (None: it may)."""
        if not self.ended or not self.process.is_alive():
            return "its last job did not end by itself"
        if self.status == "FAILED":  # an error may leave a process unfit (a CUDA error, a leak)
            return "its last job failed"
        if self.status is None:  # superseded: its worker was paused or cut off; start afresh
            return "its last job was taken over by another worker"
        if max_mb and self.resident_mb is not None and self.resident_mb > max_mb:
            return f"it holds {self.resident_mb:.0f} MB, over CNNQ_JOB_PROCESS_MAX_MB={max_mb:g}"
        return None

    def worn_out(self, max_jobs: int) -> bool:
        """Whether it has run its share of jobs (`CNNQ_JOB_PROCESS_MAX_JOBS`): it is replaced once a
        successor is ready, and runs the jobs that come before that."""
        return bool(max_jobs) and self.jobs >= max_jobs

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(self.process.pid, signum)  # type: ignore[arg-type]

    def discard(self) -> None:
        """Stop it at once (it holds no job) and reap it."""
        self._link.close()
        self.process.kill()
        self.process.join(timeout=10)


def start_job_process(job_id: str, worker: str, ready: JobProcess | None = None) -> JobProcess:
    """The process running `job_id`: the ready one (a reused or standby process) if it is still
    alive, else a fresh one."""
    if ready is not None:
        if ready.process.is_alive():
            with contextlib.suppress(OSError):
                return ready.run(job_id)
        ready.discard()
    return JobProcess(worker).run(job_id)

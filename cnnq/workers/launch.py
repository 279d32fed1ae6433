"""`cnnq worker`: one Celery worker process per GPU (pinned with CUDA_VISIBLE_DEVICES) or CPU slot.

This process only supervises: it passes SIGTERM/SIGINT on to its workers, once per signal it gets, and
waits for them. Each worker runs in its own process group, so a terminal's Ctrl-C or a `kill` of this
process's group reaches each worker once, through here (a second signal means "stop at once"); a worker
whose supervisor dies gets SIGTERM.
Each worker's job processes get `cores / worker processes` torch threads (CNNQ_TORCH_THREADS), so the
workers of one host never oversubscribe its cores.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field

from cnnq.errors import UserError
from cnnq.lifecycle.queues import CPU_QUEUE, DEFAULT_QUEUE, GPU_QUEUE, gpu_queue
from cnnq.settings import get_settings, usable_cores
from cnnq.workers.gpus import visible_gpus
from cnnq.workers.job_process import die_with_parent


@dataclass(frozen=True)
class WorkerPlan:
    name: str
    queues: list[str]
    gpu: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "cnnq.workers.process",
            "--name",
            self.name,
            "--queues",
            ",".join(self.queues),
        ]
        if self.gpu is not None:
            args += ["--gpu", str(self.gpu)]
        return args


def parse_gpus(text: str) -> list[int]:
    """`all` or `0,1`: the GPU indices to serve, checked against what `nvidia-smi` sees."""
    present = [gpu.index for gpu in visible_gpus()]
    if not present:
        raise UserError(
            "--gpus: no GPU is visible on this host (nvidia-smi lists none); use `cnnq worker --cpu`"
        )
    if text.strip() == "all":
        return present
    try:
        wanted = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--gpus: {text!r} is not `all` or a list of indices like 0,1") from None
    missing = [index for index in wanted if index not in present]
    if missing or not wanted:
        raise UserError(f"--gpus: no GPU {missing or text!r} here; this host has GPUs {present}")
    return wanted


def plan_workers(
    gpus: list[int], cpu_workers: int, extra_queues: list[str], threads: int | None = None
) -> list[WorkerPlan]:
    host = socket.gethostname()
    tag = os.getpid()
    total = len(gpus) + cpu_workers
    if total == 0:
        raise UserError("nothing to start: give --gpus and/or --cpu")
    threads = threads or get_settings().torch_threads or max(1, usable_cores() // total)
    plans = []
    for index in gpus:
        queues = [gpu_queue(index), GPU_QUEUE, *extra_queues, DEFAULT_QUEUE]
        env = {"CUDA_VISIBLE_DEVICES": str(index), "CNNQ_TORCH_THREADS": str(threads)}
        plans.append(WorkerPlan(f"gpu{index}-{tag}@{host}", _unique(queues), index, env))
    for slot in range(1, cpu_workers + 1):
        env = {"CUDA_VISIBLE_DEVICES": "", "CNNQ_TORCH_THREADS": str(threads)}
        plans.append(
            WorkerPlan(
                f"cpu{slot}-{tag}@{host}", _unique([CPU_QUEUE, *extra_queues, DEFAULT_QUEUE]), None, env
            )
        )
    return plans


def _unique(queues: list[str]) -> list[str]:
    return list(dict.fromkeys(queues))


def run_workers(plans: list[WorkerPlan]) -> int:
    """Start the planned worker processes and wait for all of them; returns the worst exit code."""
    processes = [
        subprocess.Popen(
            plan.command(),
            env={**os.environ, **plan.env},
            preexec_fn=functools.partial(die_with_parent, signal.SIGTERM),
            process_group=0,
        )
        for plan in plans
    ]

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [process.wait() for process in processes]
    return max((abs(code) for code in codes), default=0)

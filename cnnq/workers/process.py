"""One Celery worker process (solo pool): `python -m cnnq.workers.process --name N --queues a,b [--gpu I]`.

`cnnq worker` starts one of these per GPU or CPU slot. It migrates the database, registers in the
`workers` table when ready, beats (and reaps lost jobs) while alive, and marks itself stopped on exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket

from celery.signals import worker_ready, worker_shutdown

from cnnq.db.migrate import upgrade_database
from cnnq.db.session import session_scope
from cnnq.db.workers import register_worker, stop_worker
from cnnq.lifecycle.broker import RUN_JOB_TASK, get_app
from cnnq.workers.gpus import visible_gpus
from cnnq.workers.heartbeat import Heartbeat
from cnnq.workers.task import WorkerState, run_job_task

log = logging.getLogger("cnnq.worker")


def _host_memory_mb() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cnnq-worker-process")
    parser.add_argument("--name", required=True, help="Celery node name, e.g. cpu1-4242@host")
    parser.add_argument("--queues", required=True)
    parser.add_argument("--gpu", type=int, default=None)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    upgrade_database()
    queues = args.queues.split(",")
    gpu = next((g for g in visible_gpus() if g.index == args.gpu), None) if args.gpu is not None else None

    @worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        with session_scope() as session:
            register_worker(
                session,
                args.name,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=queues,
                gpu_index=args.gpu,
                gpu_name=gpu.name if gpu else None,
                gpu_memory_mb=gpu.memory_mb if gpu else None,
                memory_mb=_host_memory_mb(),
            )
        WorkerState.name = args.name
        WorkerState.heartbeat = Heartbeat(args.name, registered=True, recover=True)
        WorkerState.heartbeat.start()
        _take_over_stop_signals()
        WorkerState.prepare_standby()
        log.info("worker %s ready on queues %s", args.name, ",".join(queues))

    @worker_shutdown.connect(weak=False)
    def _shutdown(**_: object) -> None:
        WorkerState.drop_standby()
        if WorkerState.heartbeat is not None:
            WorkerState.heartbeat.stop()
        with session_scope() as session:
            stop_worker(session, args.name)

    app = get_app()
    app.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True)(run_job_task)
    WorkerState.name = args.name
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--hostname={args.name}",
            f"--queues={args.queues}",
            f"--loglevel={args.loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--prefetch-multiplier=1",
        ]
    )


def _take_over_stop_signals() -> None:
    """SIGTERM and SIGINT (`cnnq down`, Ctrl-C, `docker stop`, an eviction) stop the worker the same way:
    the running job is asked to stop at its next batch and goes back to the queue, then the worker exits
    (Celery's warm shutdown). A second signal kills the job at once; it is re-queued all the same.
    Celery's own handlers would escalate a second Ctrl-C to a cold shutdown inside the running task."""
    warm_shutdown = signal.getsignal(signal.SIGTERM)

    def on_stop(signum: int, frame: object) -> None:
        log.warning(
            "worker %s: %s; stopping after the running job is re-queued",
            WorkerState.name,
            signal.Signals(signum).name,
        )
        WorkerState.on_stop_signal()
        if callable(warm_shutdown):
            warm_shutdown(signum, frame)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop)


if __name__ == "__main__":
    main()

"""One Celery worker process (solo pool): `python -m cnnq.workers.process --name N --queues a,b [--gpu I]`.

`cnnq worker` starts one of these per GPU or CPU slot. It migrates the database, registers in the
`workers` table when ready, beats (and reaps lost jobs) while alive, and marks itself stopped on exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

from celery.signals import worker_ready, worker_shutdown

from cnnq.db.migrate import upgrade_database
from cnnq.db.session import session_scope
from cnnq.db.workers import register_worker, stop_worker
from cnnq.workers.gpus import visible_gpus
from cnnq.workers.heartbeat import Heartbeat
from cnnq.workers.task import WorkerState

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
        WorkerState.heartbeat = Heartbeat(args.name, registered=True, reap=True)
        WorkerState.heartbeat.start()
        WorkerState.prepare_standby()
        log.info("worker %s ready on queues %s", args.name, ",".join(queues))

    @worker_shutdown.connect(weak=False)
    def _shutdown(**_: object) -> None:
        WorkerState.drop_standby()
        if WorkerState.heartbeat is not None:
            WorkerState.heartbeat.stop()
        with session_scope() as session:
            stop_worker(session, args.name)

    from cnnq.workers.celery_app import get_app

    WorkerState.name = args.name
    get_app().worker_main(
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


if __name__ == "__main__":
    main()

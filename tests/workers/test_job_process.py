"""The job process's set-up, checked where it runs: in a process spawned as the worker spawns it."""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.connection import Connection

import pytest

from cnnq.workers.job_process import PRELOADED, prepare_job_process


def _report(conn: Connection) -> None:
    before = multiprocessing.get_start_method()
    prepare_job_process()
    conn.send((before, multiprocessing.get_start_method(), [name in sys.modules for name in PRELOADED]))
    conn.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is the Linux start method")
def test_a_job_process_forks_its_dataloader_workers_and_has_the_job_code_loaded() -> None:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_report, args=(sender,))
    child.start()
    sender.close()
    before, after, loaded = receiver.recv()
    child.join(timeout=60)
    assert before == "spawn"  # what a spawned process would use for its DataLoader workers
    assert after == "fork"
    assert all(loaded)

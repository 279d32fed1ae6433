"""The allocator keeps what a job's steps free (no page faults for reused activations) and gives it back
between jobs; each case in a fresh Python process, since malloc's thresholds are the process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

PROBE = """
import json, resource, sys
import torch
from cnnq.jobs.device import configure_cpu
from cnnq.jobs.allocator import keep_freed_memory
from cnnq.models.registry import build_model
from cnnq.workers.job_process import _between_jobs, resident_mb

configure_cpu()
if sys.argv[1:] == ["kept-only"]:
    sys.exit(print(json.dumps({"kept": keep_freed_memory()})))
torch.manual_seed(0)
model = build_model("mnist-cnn", in_channels=3, image_size=64, num_classes=10)
optimizer = torch.optim.Adam(model.parameters(), fused=True)
images, labels = torch.randn(32, 3, 64, 64), torch.randint(0, 10, (32,))

def step():
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()

for _ in range(6):  # the heap settles into the step's pattern of blocks
    step()
resident_first = resident_mb()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4
resident_held = resident_mb()
del model, optimizer
_between_jobs()
print(json.dumps({"kept": keep_freed_memory(), "faults_per_step": faults, "resident_first": resident_first,
                  "resident_held": resident_held, "resident_after": resident_mb()}))
"""


def probe(*arguments: str, **environment: str) -> dict[str, float]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.pop("GLIBC_TUNABLES", None)
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *arguments],
        env=env | {"CNNQ_TORCH_THREADS": "1"} | environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_a_job_reuses_freed_memory_and_gives_it_back_between_jobs() -> None:
    kept = probe()
    assert kept["kept"] is True
    # glibc's default maps large activations afresh: 8,500 pages faulted in per step of this batch once
    # its threshold has adapted (86,000 at a fixed 128 KiB). Kept, the freed blocks are reused: next to
    # no page is faulted in again (0-1,000 seen)...
    assert kept["faults_per_step"] < 3000
    # ...the process grows no further than its first steps took it...
    assert kept["resident_held"] - kept["resident_first"] < 50
    # ...and what the job held went back to the system when it ended.
    assert kept["resident_held"] - kept["resident_after"] > 100


def test_a_user_who_tuned_malloc_keeps_their_settings() -> None:
    tuned = probe(MALLOC_MMAP_THRESHOLD_="131072")
    assert tuned["kept"] is False
    assert tuned["faults_per_step"] > 10_000  # their fixed 128 KiB threshold, untouched
    assert probe("kept-only", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")["kept"] is False

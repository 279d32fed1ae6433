"""Training curves within an epoch: the current batch's loss and the learning rate, reported as a step
metric (the global batch number as step) every `CURVE_SECONDS` of training.

Throttled by the clock, not by a batch count, so its cost stays the same whatever a batch takes: a
clock read per batch (0.45 µs measured) and one write per interval (about 8 ms on SQLite, a fenced
UPDATE and an upsert; on a GPU also one `loss.item()` sync): about 0.4% of training time. The points go
through `Reporter.curve`, kept apart from the per-epoch metrics.
"""

from __future__ import annotations

import time

import torch

from cnnq.jobs.reporter import Reporter

CURVE_SECONDS = 2.0


class TrainingCurve:
    def __init__(self, reporter: Reporter, every_seconds: float = CURVE_SECONDS) -> None:
        self.reporter = reporter
        self.every = every_seconds
        self.next_point = time.monotonic() + every_seconds

    def batch(self, step: int, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """After batch `step` (counted over the whole run): a point, when one is due."""
        now = time.monotonic()
        if now < self.next_point:
            return
        self.next_point = now + self.every
        self.reporter.curve(step, {"train_loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"]})

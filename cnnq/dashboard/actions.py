"""The dashboard's two writes, through the same functions as `cnnq cancel` and `cnnq retry`."""

from __future__ import annotations

from cnnq.lifecycle.cancel import cancel_job
from cnnq.lifecycle.submit import retry_job

__all__ = ["cancel_job", "retry_job"]

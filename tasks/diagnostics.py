"""Tasks that check the task machinery itself."""

from __future__ import annotations

import time

import structlog

from tasks.consumer import stopping, worker_identity
from tasks.declare import task

log = structlog.get_logger(__name__)
MAX_HOLD_SECONDS = 60.0


@task()
def ping(sent_at: float, hold_seconds: float = 0.0) -> dict[str, object]:
    """Answer with who ran it, how long it waited in the queue, and the request and trace it
    ran under (`stride-worker ping` sends one). `hold_seconds` (at most 60) keeps the worker
    busy that long first, for shutdown drills; a stopping worker cuts the hold short."""
    queued = time.time() - sent_at
    deadline = time.monotonic() + min(max(hold_seconds, 0.0), MAX_HOLD_SECONDS)
    while time.monotonic() < deadline and not stopping():
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    context = structlog.contextvars.get_contextvars()
    log.info("ping", queued_seconds=round(queued, 3))
    return {
        "worker": worker_identity(),
        "queued_seconds": queued,
        "request_id": context.get("request_id", ""),
        "trace_id": context.get("trace_id", ""),
        "cut_short": stopping(),
    }

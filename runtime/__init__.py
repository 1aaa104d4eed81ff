"""The composition root shared by the server, the worker and tools: see `runtime.root`."""

from runtime.root import (
    Runtime,
    build_database,
    check_queue_consumed,
    check_server,
    check_worker,
    open_runtime,
    runs_inprocess_workers,
)

__all__ = [
    "Runtime",
    "build_database",
    "check_queue_consumed",
    "check_server",
    "check_worker",
    "open_runtime",
    "runs_inprocess_workers",
]

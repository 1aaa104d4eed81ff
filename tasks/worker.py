"""Entry point: `stride-worker` or `python -m tasks`.

`stride-worker` (or `stride-worker run`) consumes the queue the settings choose with
`STRIDE_HUEY_WORKERS` threads until SIGTERM or SIGINT, then stops taking tasks, gives running
ones `STRIDE_SHUTDOWN_GRACE_SECONDS` to finish, puts back on the queue those that did not,
and exits 0. Run as many as you like, on any host that reaches Redis and the database.

`stride-worker ping` sends a ping task and waits for a worker to answer: exit 0 with the
answer as JSON, or 1 when none answered in time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import structlog
from huey.exceptions import ResultTimeout

from core.addresses import ListenError
from core.error_reporting import flush as flush_errors
from core.metrics_endpoint import MetricsEndpoint
from core.process import configure_observability
from core.settings import Settings, SettingsError, load_settings
from core.telemetry import tracer
from runtime import check_worker, open_runtime
from storage.database import DatabaseUnavailable
from tasks.consumer import StrideConsumer, quiet_huey_logging, worker_identity
from tasks.diagnostics import ping

log = structlog.get_logger("worker")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="stride-worker", description="Run Stride's task workers (configured by STRIDE_*)."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="consume the task queue until SIGTERM (the default)")
    pinging = commands.add_parser("ping", help="send a ping task; wait for a worker to answer")
    pinging.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    args = parser.parse_args(argv)
    try:
        # Workers sign no page tokens and check no admin token: those secrets stay optional.
        settings = load_settings(require_shared_secrets=False)
        check_worker(settings)
    except SettingsError as exc:
        print(f"stride-worker: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_observability(settings)
    if args.command == "ping":
        sys.exit(send_ping(settings, args.timeout))
    sys.exit(run(settings))


def run(settings: Settings) -> int:
    try:
        runtime = open_runtime(settings)
    except DatabaseUnavailable as exc:
        log.error("cannot start", error=str(exc))
        return 1
    quiet_huey_logging(settings.log_level)
    try:
        address = settings.worker_metrics_address
        metrics = MetricsEndpoint(address) if address else None
    except ListenError as exc:
        runtime.close()
        log.error("cannot start", error=str(exc))
        return 1
    try:
        consumer = StrideConsumer(
            runtime.huey,
            workers=settings.huey_workers,
            grace=settings.shutdown_grace_seconds,
            handle_signals=True,
        )
        log.info(
            "worker started",
            worker=worker_identity(),
            queue=runtime.huey.describe(),
            threads=settings.huey_workers,
            database=runtime.database.primary.url.render_as_string(hide_password=True),
            metrics_port=metrics.port if metrics else None,
        )
        consumer.run()  # returns after a graceful stop
    finally:
        if metrics is not None:
            metrics.close()
        runtime.close()
        flush_errors()
    log.info("worker stopped", worker=worker_identity())
    return 0


def send_ping(settings: Settings, timeout: float) -> int:
    runtime = open_runtime(settings, wait_for_database=False)
    request_id = f"ping-{uuid.uuid4().hex[:16]}"
    try:
        with (
            tracer().start_as_current_span("stride-worker ping"),
            structlog.contextvars.bound_contextvars(request_id=request_id),
        ):
            result = runtime.huey.submit(ping, time.time())
            try:
                answer = result.get(blocking=True, timeout=timeout, revoke_on_timeout=True)
            except ResultTimeout:
                print(f"stride-worker: no worker answered within {timeout:g} s", file=sys.stderr)
                return 1
    finally:
        runtime.close()
    print(json.dumps(answer))
    return 0

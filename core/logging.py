"""structlog set up once: JSON lines in production, readable output in a terminal.

Stride's own log lines are rendered by structlog and written straight to the stream
(about three times cheaper than going through the stdlib); other libraries' stdlib
records are rendered the same way by a formatter on the root logger. The access log
(`access`), one line per call, is rendered directly when it is JSON: the same line,
without a processor chain that would cost as much as a trivial call itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol

import structlog

_REDACTED_KEYS = frozenset({"authorization", "token", "access_token", "refresh_token", "password"})
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
           "ERROR": logging.ERROR}  # fmt: skip


class LogStream(Protocol):
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...
    def isatty(self) -> bool: ...


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: never write values of secret-bearing keys."""
    for key in _REDACTED_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def configure_logging(
    level: str = "INFO", fmt: str = "auto", stream: LogStream | None = None
) -> None:
    global _access
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    _access = _json_access(out, _LEVELS[level]) if use_json else _structlog_access
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    exceptions: Any = structlog.processors.format_exc_info if use_json else _identity
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[*shared, exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(out),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler: logging.Handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                exceptions,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every Strava request at INFO (a sync makes thousands); the Strava client
    # logs what matters (retries, waits) itself.
    if level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, _ClientWentAway) for f in grpc_core.filters):
        grpc_core.addFilter(_ClientWentAway())


def access(fields: dict[str, Any], *, quiet: bool = False) -> None:
    """The access-log line of one call (event `rpc`), at INFO; `quiet` ones at DEBUG."""
    _access(fields, quiet)


def _structlog_access(fields: dict[str, Any], quiet: bool) -> None:
    logger = structlog.get_logger("stride.access")
    (logger.debug if quiet else logger.info)("rpc", **fields)


def _json_access(out: LogStream, threshold: int) -> Callable[[dict[str, Any], bool], None]:
    """What structlog's JSON chain would write for the line (bound context variables,
    level, UTC timestamp), built in one step."""

    def write(fields: dict[str, Any], quiet: bool) -> None:
        level = logging.DEBUG if quiet else logging.INFO
        if level < threshold:
            return
        line = structlog.contextvars.get_contextvars()
        line.update(fields)
        line["event"] = "rpc"
        line["level"] = "debug" if quiet else "info"
        line["timestamp"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        out.write(json.dumps(line, default=repr) + "\n")
        out.flush()

    return write


_access: Callable[[dict[str, Any], bool], None] = _structlog_access


class _ClientWentAway(logging.Filter):
    """gRPC logs an ERROR with a traceback when a response cannot be written because the
    client cancelled or disconnected: an everyday event, already in the call's access line
    as CANCELLED. Keep it at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(
            "ExecuteBatchError raised in core"
        ):
            record.levelno, record.levelname, record.exc_info = logging.DEBUG, "DEBUG", None
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def _identity(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return event

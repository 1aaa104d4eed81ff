"""Carries an RPC's request id and trace context into the Huey tasks it enqueues."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import structlog
from opentelemetry import trace

from core.telemetry import context_from_metadata, current_trace_headers, tracer

P = ParamSpec("P")
T = TypeVar("T")
CONTEXT_KWARG = "stride_context"


def capture() -> dict[str, str]:
    """What a task needs to join the current request: its trace headers and request id."""
    carried = current_trace_headers()
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        carried["request_id"] = str(request_id)
    return carried


def traced(fn: Callable[P, T]) -> Callable[P, T]:
    """Wrap a task body: run it in a span continuing the enqueuing request's trace, with the
    request id bound to every log line. Enqueue with `task(..., stride_context=capture())`."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        carried: dict[str, str] = kwargs.pop(CONTEXT_KWARG, None) or {}  # type: ignore[assignment]
        parent = context_from_metadata(carried)
        bound = {"request_id": carried["request_id"]} if "request_id" in carried else {}
        with (
            structlog.contextvars.bound_contextvars(task=fn.__name__, **bound),
            tracer().start_as_current_span(
                f"task {fn.__name__}", context=parent, kind=trace.SpanKind.CONSUMER
            ),
        ):
            return fn(*args, **kwargs)

    return run

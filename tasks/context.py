"""Carries an RPC's request id and trace context into the Huey tasks it enqueues.

Every enqueue through Stride's Huey (`tasks.queue`) adds `stride_context=capture()` to the
task's kwargs, so callers cannot forget it; the worker runs the task inside `task_scope`,
which continues the enqueuing request's trace and binds its request id (and the task's
trace id, name, id and attempt) to every log line the task writes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import structlog
from opentelemetry import trace

from core.telemetry import context_from_metadata, current_trace_headers, tracer

P = ParamSpec("P")
T = TypeVar("T")
CONTEXT_KWARG = "stride_context"
# Carried beside the trace headers: which attempt of the task the next run is (from 1).
ATTEMPT_KEY = "attempt"
_TRACED_MARK = "__stride_traced__"


def capture() -> dict[str, str]:
    """What a task needs to join the current request: its trace headers and request id."""
    carried = current_trace_headers()
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        carried["request_id"] = str(request_id)
    return carried


def attempt_of(carried: Mapping[str, str]) -> int:
    try:
        return max(1, int(carried.get(ATTEMPT_KEY, "1")))
    except ValueError:
        return 1


@contextmanager
def task_scope(name: str, carried: Mapping[str, str], **fields: Any) -> Iterator[trace.Span]:
    """Run a task body in a span continuing the carried trace, with the carried request id,
    the trace id and `fields` bound to every log line."""
    parent = context_from_metadata({k: v for k, v in carried.items() if k.startswith("trace")})
    bound = {"request_id": carried["request_id"]} if "request_id" in carried else {}
    with tracer().start_as_current_span(
        f"task {name}", context=parent, kind=trace.SpanKind.CONSUMER
    ) as span:
        span_context = span.get_span_context()
        if span_context.is_valid:  # always, once core.telemetry.configure_tracing has run
            bound["trace_id"] = format(span_context.trace_id, "032x")
        with structlog.contextvars.bound_contextvars(task=name, **bound, **fields):
            yield span


def traced(fn: Callable[P, T]) -> Callable[P, T]:
    """Wrap a task body for a Huey that is not Stride's: pops `stride_context` and runs the
    body in `task_scope`. Stride's Huey does this for every task, and unwraps a body already
    wrapped here, so wrapping twice is harmless."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        carried: dict[str, str] = kwargs.pop(CONTEXT_KWARG, None) or {}  # type: ignore[assignment]
        with task_scope(fn.__name__, carried):
            return fn(*args, **kwargs)

    setattr(run, _TRACED_MARK, True)
    return run


def untraced(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The body inside `traced(body)`, or `fn` itself."""
    if getattr(fn, _TRACED_MARK, False):
        return fn.__wrapped__  # type: ignore[attr-defined,no-any-return]
    return fn

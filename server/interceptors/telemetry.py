"""Request ids, the RPC's trace span, metrics and one structured log line per call.

The request id goes back in the trailers of a unary call and in the headers of a stream
(with its first message). Sending headers of their own would cost a unary call a second
write to the transport, a quarter of a trivial call's time.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from grpc_interceptor.server import AsyncServerInterceptor
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter

from core import metrics
from core.logging import access
from core.telemetry import context_from_metadata, start_server_span
from server.clientaddress import TrustedProxies
from server.interceptors.base import (
    Context,
    Handler,
    count_stream,
    current_client,
    current_peer,
    is_open_method,
    is_stream,
    metadata_of,
    when_done,
)
from server.principal import Principal, current_principal

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _request_id(metadata: dict[str, str]) -> str:
    offered = metadata.get("x-request-id", "")
    if offered and _REQUEST_ID.fullmatch(offered):
        return offered
    return os.urandom(16).hex()


class _Meters:
    """A method's metrics, labelled once (a label lookup per call costs more than the
    increment)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.started = metrics.RPC_STARTED.labels(method)
        self.latency = metrics.RPC_LATENCY.labels(method)
        self.sent = metrics.STREAM_MESSAGES_SENT.labels(method)
        self.received = metrics.STREAM_MESSAGES_RECEIVED.labels(method)
        self._handled: dict[grpc.StatusCode, Counter] = {}

    def handled(self, code: grpc.StatusCode) -> Counter:
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = metrics.RPC_HANDLED.labels(self.method, code.name)
        return counter


class TelemetryInterceptor(AsyncServerInterceptor):
    def __init__(self, trusted_proxies: TrustedProxies | None = None) -> None:
        self._proxies = trusted_proxies or TrustedProxies(())
        # Only methods the server has reach here (the chain wraps known methods only).
        self._meters: dict[str, _Meters] = {}

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        meters = self._meters.get(method_name)
        if meters is None:
            meters = self._meters[method_name] = _Meters(method_name)
        metadata = metadata_of(context)
        request_id = _request_id(metadata)
        call = _Call(meters, request_id, context, context.peer())
        call.client = self._proxies.client_ip(call.peer, metadata.get("x-forwarded-for"))
        current_peer.set(call.peer)
        current_client.set(call.client)
        span = start_server_span(
            method_name.lstrip("/"),
            context_from_metadata(metadata),
            {"rpc.system": "grpc", "rpc.method": method_name, "request.id": request_id},
        )
        call.begin(span)
        if is_stream(request_or_iterator):
            request_or_iterator = count_stream(request_or_iterator, call.received)
        try:
            result = method(request_or_iterator, context)
            if is_stream(result):
                # A response stream ends with its call, however that happens.
                when_done(context, lambda: call.end(None))
                return self._stream(result, call)
            # The call runs in its own task and context: the span stays current until the
            # call ends, and nothing needs detaching.
            otel_context.attach(trace.set_span_in_context(span))
            context.set_trailing_metadata(call.response_metadata)
            response = await result
        except BaseException as exc:
            call.end(exc)
            raise
        call.completed = True
        call.end(None)
        return response

    async def _stream(self, responses: AsyncIterator[Any], call: _Call) -> AsyncIterator[Any]:
        """A response stream's headers (x-request-id) go out with its first message, not
        before: a stream refused before its first message (unauthenticated, denied, not
        found) is then a trailers-only response, which an HTTP gateway turns into the status's
        HTTP code and JSON body (headers already sent would have committed it to 200). The
        error's trailers carry the request id then (interceptors.errors)."""
        # The span is current while the handler produces a response, not across `yield`:
        # a generator may be finalized in another context, where detaching would fail.
        iterator = aiter(responses)
        while True:
            with trace.use_span(call.span, end_on_exit=False):
                try:
                    response = await anext(iterator)
                except StopAsyncIteration:
                    call.completed = True
                    if not call.sent[0]:
                        call.context.set_trailing_metadata(call.response_metadata)
                    return
                finally:
                    call.note_principal()
            if not call.sent[0]:
                await call.context.send_initial_metadata(call.response_metadata)
            call.sent[0] += 1
            yield response


class _Call:
    """Book-keeping for one RPC from its first to its last message."""

    def __init__(self, meters: _Meters, request_id: str, context: Context, peer: str) -> None:
        self.meters = meters
        self.method = meters.method
        self.quiet = is_open_method(self.method)
        self.request_id = request_id
        self.context = context
        self.peer = peer
        self.client = ""
        self.response_metadata = (("x-request-id", request_id),)
        self.sent = [0]
        self.received = [0]
        self.started = time.perf_counter()
        self.span: trace.Span = trace.INVALID_SPAN
        self.trace_id = ""
        self.principal: Principal | None = None
        # Whether the handler ran to its end: a stream ended without that or a status was
        # cancelled by its client (gRPC reports neither a code nor `cancelled()` then).
        self.completed = False

    def begin(self, span: trace.Span) -> None:
        self.span = span
        self.trace_id = format(span.get_span_context().trace_id, "032x")
        structlog.contextvars.bind_contextvars(
            request_id=self.request_id, trace_id=self.trace_id, method=self.method
        )
        self.meters.started.inc()
        metrics.RPC_IN_FLIGHT.inc()

    def note_principal(self) -> None:
        """Remember who called while in the call's context (a stream's done-callback may
        run outside it)."""
        self.principal = current_principal.get() or self.principal

    def end(self, error: BaseException | None) -> None:
        duration = time.perf_counter() - self.started
        code = _code(self.context, error, self.completed)
        metrics.RPC_IN_FLIGHT.dec()
        self.meters.handled(code).inc()
        self.meters.latency.observe(duration)
        if self.sent[0]:
            self.meters.sent.inc(self.sent[0])
        if self.received[0]:
            self.meters.received.inc(self.received[0])
        principal = current_principal.get() or self.principal
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        if principal is not None:
            self.span.set_attribute("enduser.id", principal.label)
        if code != grpc.StatusCode.OK:
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
        self.span.end()
        fields: dict[str, Any] = {
            "method": self.method,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "code": code.name,
            "duration_ms": round(duration * 1000, 3),
            "peer": self.peer,
            "client": self.client,
            "principal": principal.label if principal else None,
        }
        if self.sent[0] or self.received[0]:
            fields.update(messages_sent=self.sent[0], messages_received=self.received[0])
        # Health probes arrive every few seconds from every load balancer: answered ones
        # (and reflection's) are counted in metrics and logged at DEBUG; failures at INFO.
        access(fields, quiet=self.quiet and code == grpc.StatusCode.OK)


def _code(context: Context, error: BaseException | None, completed: bool) -> grpc.StatusCode:
    if error is None:
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code
        return grpc.StatusCode.OK if completed else grpc.StatusCode.CANCELLED
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN

"""Turns exceptions from any handler, unary or streaming, into rich statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog
from grpc_interceptor.server import AsyncServerInterceptor

from core.error_reporting import report
from server import errors
from server.interceptors.base import is_stream
from server.principal import current_principal

log = structlog.get_logger(__name__)


class ErrorInterceptor(AsyncServerInterceptor):
    async def intercept(
        self,
        method: Callable[..., Any],
        request_or_iterator: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        method_name: str,
    ) -> Any:
        try:
            result = method(request_or_iterator, context)
            if is_stream(result):
                return self._stream(result, context, method_name)
            return await result
        except Exception as exc:
            await _abort(exc, context, method_name)

    async def _stream(
        self,
        responses: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
        method_name: str,
    ) -> AsyncIterator[Any]:
        try:
            async for response in responses:
                yield response
        except Exception as exc:
            await _abort(exc, context, method_name)


async def _abort(
    exc: Exception, context: grpc.aio.ServicerContext[Any, Any], method_name: str
) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    rpc_error = errors.from_exception(exc, method_name)
    if rpc_error is None:
        bound = structlog.contextvars.get_contextvars()
        principal = current_principal.get()
        log.exception("unhandled error")
        report(
            exc,
            request_id=str(bound.get("request_id", "")),
            trace_id=str(bound.get("trace_id", "")),
            method=method_name,
            principal=principal.label if principal else "anonymous",
        )
        rpc_error = errors.internal(str(bound.get("request_id", "")))
    # The request id in the trailers too: a stream refused before its first message sent
    # no headers (interceptors.telemetry).
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    trailers = rpc_error.trailing_metadata()
    if request_id:
        trailers += (("x-request-id", str(request_id)),)
    await context.abort(rpc_error.code, rpc_error.message, trailing_metadata=trailers)

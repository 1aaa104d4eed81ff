"""A cap on calls in progress (STRIDE_MAX_CONCURRENT_RPCS), answered like every other limit.

gRPC's own `maximum_concurrent_rpcs` refuses calls before any interceptor runs: health
checks included, with no RetryInfo, log line or metric. This layer runs inside telemetry
and the error mapping, and leaves health and reflection alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from domain.errors import ResourceExhausted
from server.interceptors.base import (
    Context,
    Handler,
    Method,
    is_open_method,
    is_stream,
    when_done,
)

RETRY_SECONDS = 1.0


class ConcurrencyLimitInterceptor(AsyncServerInterceptor):
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight = 0

    def applies_to(self, method: Method) -> bool:
        return not is_open_method(method.name)

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        result = method(request_or_iterator, context)
        if is_stream(result):
            return self._held_stream(result, context)
        self._enter(result)
        try:
            return await result
        finally:
            self._leave()

    def _enter(self, pending: Any = None) -> None:
        if self._in_flight >= self._limit:
            if pending is not None:
                pending.close()  # never started: close it so it is not reported as unawaited
            raise ResourceExhausted(
                f"the server is handling its limit of {self._limit} calls; retry shortly",
                retry_after_seconds=RETRY_SECONDS,
                reason="SERVER_BUSY",
            )
        self._in_flight += 1

    async def _held_stream(
        self, responses: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        self._enter()
        done = when_done(context, self._leave)
        try:
            async for response in responses:
                yield response
        finally:
            done()

    def _leave(self) -> None:
        self._in_flight -= 1

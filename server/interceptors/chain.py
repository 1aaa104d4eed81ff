"""Several interceptors registered as one grpc-interceptor layer.

grpc-interceptor rebuilds the method handler once per interceptor on every call; running
the concerns through one layer builds it once. Each concern stays its own interceptor
class with the usual `intercept(method, request, context, method_name)`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Sequence
from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from server.interceptors.base import Context, Handler


class InterceptorChain(AsyncServerInterceptor):
    def __init__(self, layers: Sequence[AsyncServerInterceptor]) -> None:
        self._layers = list(reversed(layers))  # innermost first

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        # Response-streaming handlers are async generators; every layer must then hand the
        # next one an async iterator rather than a coroutine.
        streaming = inspect.isasyncgenfunction(method)
        handler = method
        for layer in self._layers:
            handler = _bind(layer, handler, method_name, streaming)
        result = handler(request_or_iterator, context)
        return result if streaming else await result


def _bind(
    layer: AsyncServerInterceptor, inner: Handler, method_name: str, streaming: bool
) -> Handler:
    if streaming:
        return lambda request, context: _stream(layer.intercept(inner, request, context,
                                                                method_name))  # fmt: skip
    return lambda request, context: layer.intercept(inner, request, context, method_name)


async def _stream(pending: Any) -> AsyncIterator[Any]:
    responses = await pending
    async for response in responses:
        yield response

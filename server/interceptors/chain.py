"""Several interceptors registered as one grpc-interceptor layer.

grpc-interceptor rebuilds the method handler once per interceptor on every call; running
the concerns through one layer builds it once. Each concern stays its own interceptor
class with the usual `intercept(method, request, context, method_name)`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias, cast

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from server.interceptors.base import Context, Handler
from server.interceptors.requests import tolerant

Handlers: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class InterceptorChain(AsyncServerInterceptor):
    def __init__(self, layers: Sequence[AsyncServerInterceptor]) -> None:
        self._layers = list(reversed(layers))  # innermost first

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handlers]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handlers:
        """The library's handler, decoding requests tolerantly (see interceptors.requests)."""
        handler: Any = await super().intercept_service(  # type: ignore[no-untyped-call]
            continuation, handler_call_details
        )
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED
            return cast("Handlers", None)
        decode = tolerant(handler.request_deserializer)
        return cast("Handlers", handler._replace(request_deserializer=decode))

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
        return lambda request, context: _stream(layer, inner, request, context, method_name)
    return lambda request, context: layer.intercept(inner, request, context, method_name)


async def _stream(
    layer: AsyncServerInterceptor, inner: Handler, request: Any, context: Context, method: str
) -> AsyncIterator[Any]:
    # The layer is entered on first iteration, so a stream refused before it is read
    # leaves no coroutine behind unawaited.
    responses = await layer.intercept(inner, request, context, method)
    async for response in responses:
        yield response

"""Several interceptors registered as one gRPC interceptor.

grpc-interceptor rebuilds the method handler once per interceptor on every call; running
the concerns through one layer builds it once. Each concern stays its own interceptor
class with the usual `intercept(method, request, context, method_name)`.

The chain builds the handler itself rather than through grpc-interceptor's
`intercept_service`, for two reasons: requests are decoded tolerantly (see
interceptors.requests), and whether a method streams its responses is taken from gRPC's
handler description, not guessed from the Python function (a decorated generator, or a
handler using `context.write()`, would otherwise pass through the layers as unary).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias, cast

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from server.interceptors.base import Context, Handler, is_stream
from server.interceptors.requests import tolerant

Handlers: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class InterceptorChain(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, layers: Sequence[AsyncServerInterceptor]) -> None:
        self._layers = list(reversed(layers))  # innermost first

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handlers]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handlers:
        handler: Any = await continuation(handler_call_details)
        if handler is None:  # an unknown method: gRPC answers UNIMPLEMENTED
            return cast("Handlers", None)
        method_name = handler_call_details.method
        factory, behavior = _factory_and_behavior(handler)
        if handler.response_streaming:
            inner = _as_generator(behavior)

            async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                async for response in self._chain(inner, method_name, True)(request, context):
                    yield response

            wrapped: Handler = streaming
        else:

            async def unary(request: Any, context: Context) -> Any:
                return await self._chain(behavior, method_name, False)(request, context)

            wrapped = unary
        return cast(
            "Handlers",
            factory(
                wrapped,
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            ),
        )

    def _chain(self, method: Handler, method_name: str, streaming: bool) -> Handler:
        handler = method
        for layer in self._layers:
            handler = _bind(layer, handler, method_name, streaming)
        return handler


def _factory_and_behavior(handler: Any) -> tuple[Callable[..., Any], Handler]:
    for factory, behavior in (
        (grpc.unary_unary_rpc_method_handler, handler.unary_unary),
        (grpc.unary_stream_rpc_method_handler, handler.unary_stream),
        (grpc.stream_unary_rpc_method_handler, handler.stream_unary),
        (grpc.stream_stream_rpc_method_handler, handler.stream_stream),
    ):
        if behavior is not None:
            return factory, behavior
    raise RuntimeError("a method handler without an implementation")


def _as_generator(behavior: Handler) -> Handler:
    """A response-streaming handler as an async generator, whatever its Python shape.

    A handler that writes with `context.write()` returns a coroutine (and None): it runs to
    completion here and yields nothing through the layers, which still see the call start
    and end (slots, limits, telemetry) but not its individual messages."""

    async def responses(request: Any, context: Context) -> AsyncIterator[Any]:
        result = behavior(request, context)
        if not is_stream(result):
            result = await result
            if result is None:
                return
        async for response in result:
            yield response

    return responses


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

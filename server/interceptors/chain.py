"""Several interceptors registered as one gRPC interceptor, assembled once per method.

grpc-interceptor rebuilds the method handler once per interceptor on every call. The chain
builds each method's handler the first time the method is called and reuses it: the
layers that concern the method, bound around its behaviour, with a tolerant request
decoder (see interceptors.requests). A layer that does nothing for some methods says so
with `applies_to(method)` (health and reflection skip credentials and limits; unary calls
skip the stream layer), so those calls do not pass through it at all. Each concern stays
its own interceptor class with the usual `intercept(method, request, context, method_name)`.

Whether a method streams is taken from gRPC's handler description, not guessed from the
Python function (a decorated generator, or a handler using `context.write()`, would
otherwise pass through the layers as unary).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias, cast

import grpc
from grpc_interceptor.server import AsyncServerInterceptor

from server.interceptors.base import Context, Handler, Method, Selective, is_stream
from server.interceptors.requests import tolerant

Handlers: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# Methods whose handler is kept; beyond it (a server with that many methods does not
# exist) handlers are built per call rather than remembered without bound.
MAX_METHODS = 1024


class InterceptorChain(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, layers: Sequence[AsyncServerInterceptor]) -> None:
        self._layers = list(layers)  # outermost first
        self._handlers: dict[str, Handlers] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handlers]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handlers:
        name = handler_call_details.method
        handler = self._handlers.get(name)
        if handler is not None:
            return handler
        inner: Any = await continuation(handler_call_details)
        if inner is None:  # an unknown method: gRPC answers UNIMPLEMENTED (never remembered)
            return cast("Handlers", None)
        handler = self._wrap(inner, name)
        if len(self._handlers) < MAX_METHODS:
            self._handlers[name] = handler
        return handler

    def _wrap(self, inner: Any, name: str) -> Handlers:
        method = Method(name, bool(inner.request_streaming), bool(inner.response_streaming))
        layers = [
            layer
            for layer in self._layers
            if not isinstance(layer, Selective) or layer.applies_to(method)
        ]
        factory, behavior = _factory_and_behavior(inner)
        streaming = method.response_streaming
        handler: Handler = _as_generator(behavior) if streaming else behavior
        for layer in reversed(layers):
            handler = _bind(layer, handler, name, streaming)
        if not streaming:
            handler = _coroutine_function(handler)
        return cast(
            "Handlers",
            factory(
                handler,
                request_deserializer=tolerant(inner.request_deserializer),
                response_serializer=inner.response_serializer,
            ),
        )


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


def _coroutine_function(handler: Handler) -> Handler:
    """gRPC runs a unary handler that is not a coroutine function on its thread pool; the
    bound layers are plain functions returning the outermost layer's coroutine."""

    async def unary(request: Any, context: Context) -> Any:
        return await handler(request, context)

    return unary


def _bind(
    layer: AsyncServerInterceptor, inner: Handler, method_name: str, streaming: bool
) -> Handler:
    intercept = layer.intercept
    if streaming:

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            # The layer is entered on first iteration, so a stream refused before it is
            # read leaves no coroutine behind unawaited.
            responses = await intercept(inner, request, context, method_name)
            async for response in responses:
                yield response

        return stream

    def unary(request: Any, context: Context) -> Any:
        return intercept(inner, request, context, method_name)

    return unary

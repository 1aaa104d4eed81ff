"""The chain treats every response-streaming method as a stream, whatever its Python shape."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from server.interceptors.chain import InterceptorChain
from server.interceptors.errors import ErrorInterceptor
from server.interceptors.streams import StreamInterceptor

Context = grpc.aio.ServicerContext[Any, Any]
release = asyncio.Event()  # replaced in each test: an event belongs to one event loop


async def generator(request: bytes, context: Context) -> AsyncIterator[bytes]:
    yield b"first"
    await release.wait()
    yield b"last"


def decorated(
    handler: Callable[[bytes, Context], AsyncIterator[bytes]],
) -> Callable[[bytes, Context], AsyncIterator[bytes]]:
    """A plain function returning the generator: no longer an async generator function."""

    @functools.wraps(handler)
    def wrapper(request: bytes, context: Context) -> AsyncIterator[bytes]:
        return handler(request, context)

    return wrapper


async def writer(request: bytes, context: Context) -> None:
    await context.write(b"first")
    await release.wait()
    await context.write(b"last")


HANDLERS = {"Generator": generator, "Decorated": decorated(generator), "Writer": writer}


@pytest.mark.parametrize("method", sorted(HANDLERS))
async def test_a_caller_holds_at_most_its_stream_slot(method: str) -> None:
    global release
    release = asyncio.Event()
    slots = StreamInterceptor(None, max_per_caller=1, idle_timeout=30, bytes_per_token=65536)
    server = grpc.aio.server(interceptors=[InterceptorChain([ErrorInterceptor(), slots])])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Streams",
                {name: grpc.unary_stream_rpc_method_handler(h) for name, h in HANDLERS.items()},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call: Any = channel.unary_stream(  # type: ignore[call-arg]
                f"/test.Streams/{method}"
            )
            first = call(b"")
            assert await first.read() == b"first"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(b"").read()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            release.set()
            assert await first.read() == b"last"
            assert await first.read() is grpc.aio.EOF  # type: ignore[attr-defined]
            assert [m async for m in call(b"")] == [b"first", b"last"]  # the slot is back
    finally:
        await server.stop(None)

"""Shared plumbing for interceptors: metadata access, the caller's address, stream wrapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Context], Any]

# The caller's address, read once when the call starts: gRPC frees the call's core object
# when the call ends, and reading `context.peer()` after that crashes the process.
current_peer: ContextVar[str] = ContextVar("peer", default="")
# The client's IP: the peer's, or the one a trusted proxy forwarded (server.clientaddress).
current_client: ContextVar[str] = ContextVar("client", default="")


@dataclass(frozen=True)
class Method:
    """What a layer may know about a method before any call: its name and shape."""

    name: str
    request_streaming: bool
    response_streaming: bool


@runtime_checkable
class Selective(Protocol):
    """A layer that concerns only some methods: the chain leaves it out of the others."""

    def applies_to(self, method: Method) -> bool: ...


def metadata_of(context: Context) -> dict[str, str]:
    """Text metadata with lower-case keys (binary `-bin` entries are skipped)."""
    result: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            result[key.lower()] = value
    return result


def is_open_method(method_name: str) -> bool:
    """Health and reflection stay reachable without credentials or limits."""
    return method_name.startswith(("/grpc.health.v1.", "/grpc.reflection."))


def is_stream(value: Any) -> bool:
    return hasattr(value, "__aiter__")


class Once:
    """Runs `action` the first time it is called: as a call's done-callback (gRPC calls it
    with the context when the call ends, cancelled or not) and from the code path that
    finishes normally, whichever comes first.

    A response stream whose client goes away is left suspended by gRPC, not closed: its
    `finally` runs only when the generator is garbage collected. What must happen when a
    call ends (releasing a slot, the access log line) hangs on the done-callback instead."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action

    def __call__(self, _context: Any = None) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()


def when_done(context: Context, action: Callable[[], None]) -> Once:
    """`action` once the call ends; call the result to run it sooner (still only once)."""
    once = Once(action)
    context.add_done_callback(cast(Any, once))  # typeshed declares a class, gRPC takes any callable
    return once


async def count_stream(items: AsyncIterator[Any], counter: list[int]) -> AsyncIterator[Any]:
    async for item in items:
        counter[0] += 1
        yield item

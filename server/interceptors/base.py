"""Shared plumbing for interceptors: metadata access and stream wrapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Context], Any]


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


async def count_stream(items: AsyncIterator[Any], counter: list[int]) -> AsyncIterator[Any]:
    async for item in items:
        counter[0] += 1
        yield item

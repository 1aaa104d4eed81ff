"""Requests that cannot be decoded, or that are too large to validate cheaply, stop here.

gRPC decodes a request before any interceptor runs, and a decoding failure would end the
call as UNKNOWN (unary) or INTERNAL (streams) with no log line, metric or rate limit. The
chain decodes tolerantly instead (`tolerant`), so an undecodable body reaches this layer
as `Undecodable` and is answered INVALID_ARGUMENT like any other bad input.

Repeated fields are bounded before any per-entry validation runs, so the work one request
can cause is bounded whatever the method (present or future).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from grpc_interceptor.server import AsyncServerInterceptor

from domain.errors import FieldViolation, InvalidArgument
from server.interceptors.base import Context, Handler, is_open_method, is_stream


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request message whose bytes did not decode."""

    error: str


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # any decoding failure is the caller's bad input
            return Undecodable(type(exc).__name__)

    return decode


def oversized_fields(message: Message, limit: int, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(path, entries) of every repeated field, at any depth, holding more than `limit`."""
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.is_repeated:
            if len(value) > limit:
                yield path, len(value)
                continue
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                if not _map_of_messages(field):
                    continue
                items = ((f"{path}[{key!r}]", value[key]) for key in value)
            else:
                items = ((f"{path}[{i}]", item) for i, item in enumerate(value))
            for item_path, item in items:
                yield from oversized_fields(item, limit, item_path + ".")
        elif field.message_type is not None:
            yield from oversized_fields(value, limit, path + ".")


def _map_of_messages(field: Any) -> bool:
    return field.message_type.fields_by_name["value"].message_type is not None


@functools.cache
def _can_repeat(descriptor: Descriptor) -> bool:
    """Whether a message of this type can hold a repeated field at any depth (most requests
    cannot: they need no walk)."""
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        for field in current.fields:
            if field.is_repeated:
                return True
            if field.message_type is not None:
                pending.append(field.message_type)
    return False


class RequestGuardInterceptor(AsyncServerInterceptor):
    def __init__(self, max_repeated_entries: int) -> None:
        self._limit = max_repeated_entries

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        checked = not is_open_method(method_name)
        if is_stream(request_or_iterator):
            request_or_iterator = self._checked_stream(request_or_iterator, checked)
        else:
            self._check(request_or_iterator, checked, None)
        result = method(request_or_iterator, context)
        return result if is_stream(result) else await result

    def _check(self, request: Any, bounded: bool, index: int | None) -> None:
        """`index`: the message's position in a client stream (None for a unary request)."""
        where = "request" if index is None else f"messages[{index}]"
        if isinstance(request, Undecodable):
            raise InvalidArgument(
                [FieldViolation(where, "is not a valid protobuf message")],
                reason="UNDECODABLE_REQUEST",
            )
        if bounded and _can_repeat(request.DESCRIPTOR):
            found = next(oversized_fields(request, self._limit), None)
            if found is not None:
                path, entries = found
                prefix = "" if index is None else f"{where}."
                description = f"has {entries} entries; at most {self._limit} are accepted"
                raise InvalidArgument(
                    [FieldViolation(prefix + path, description)], reason="REQUEST_TOO_LARGE"
                )

    async def _checked_stream(self, requests: AsyncIterator[Any], bounded: bool) -> Any:
        index = 0
        async for request in requests:
            self._check(request, bounded, index)
            index += 1
            yield request

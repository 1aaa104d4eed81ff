"""What one streaming call may hold: open-stream slots, time waiting on its client, and work.

* Each principal (or, for unauthenticated methods, client address) may hold at most
  `max_per_caller` streams open in this process; more are RESOURCE_EXHAUSTED.
* A stream whose client stops reading (a response waits to be written) or stops sending
  (the next request does not arrive) for `idle_timeout` seconds ends DEADLINE_EXCEEDED.
* Streams are charged by work: besides the call's cost, one token from the caller's bucket
  per `bytes_per_token` bytes streamed to the client, and per `upload_bytes_per_token`
  bytes the client streams (uploads: one deliberate act, however large). A caller out of
  tokens is slowed down (the stream pauses until its bucket refills) rather than cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import structlog
from grpc_interceptor.server import AsyncServerInterceptor

from domain.errors import DeadlineExceeded, ResourceExhausted
from server import errors
from server.interceptors.base import (
    Context,
    Handler,
    Method,
    is_open_method,
    is_stream,
    when_done,
)
from server.interceptors.ratelimit import Quotas, caller_key
from server.ratelimit import Limit

log = structlog.get_logger(__name__)
SLOT_RETRY_SECONDS = 1.0


class StreamInterceptor(AsyncServerInterceptor):
    def __init__(
        self,
        quotas: Quotas | None,
        *,
        max_per_caller: int,
        idle_timeout: float,
        bytes_per_token: int,
        upload_bytes_per_token: int | None = None,
    ) -> None:
        self._quotas = quotas
        self._max = max_per_caller
        self._idle = idle_timeout
        self._bytes_per_token = bytes_per_token
        self._upload_bytes_per_token = upload_bytes_per_token or bytes_per_token
        self._open: Counter[str] = Counter()

    def applies_to(self, method: Method) -> bool:
        """Streaming calls, but not health's Watch or reflection."""
        streaming = method.request_streaming or method.response_streaming
        return streaming and not is_open_method(method.name)

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        meter = _Meter(self._quotas, self._bytes_per_token)
        streaming_requests = is_stream(request_or_iterator)
        if streaming_requests:
            upload_meter = _Meter(self._quotas, self._upload_bytes_per_token)
            request_or_iterator = self._requests(request_or_iterator, upload_meter)
        result = method(request_or_iterator, context)
        if is_stream(result):
            return self._responses(result, meter, context)
        key = self._take_slot(result)
        try:
            return await result
        finally:
            self._release(key)

    def _take_slot(self, pending: Any = None) -> str:
        key = caller_key()
        if self._open[key] >= self._max:
            if pending is not None:
                pending.close()  # never started: close it so it is not reported as unawaited
            raise ResourceExhausted(
                f"at most {self._max} streams may be open at once per caller",
                retry_after_seconds=SLOT_RETRY_SECONDS,
                reason="TOO_MANY_STREAMS",
            )
        self._open[key] += 1
        return key

    def _release(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    async def _responses(
        self, responses: AsyncIterator[Any], meter: _Meter, context: Context
    ) -> AsyncIterator[Any]:
        key = self._take_slot()
        watchdog = _IdleWatchdog(context, self._idle)

        def ended() -> None:  # however the call ends; no abort may reach a finished call
            watchdog.disarm()
            self._release(key)

        done = when_done(context, ended)
        try:
            async for response in responses:
                await meter.add(response)
                watchdog.arm()
                yield response
                watchdog.disarm()
        finally:
            watchdog.disarm()
            done()

    async def _requests(self, requests: AsyncIterator[Any], meter: _Meter) -> AsyncIterator[Any]:
        iterator = aiter(requests)
        while True:
            try:
                async with asyncio.timeout(self._idle):
                    request = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise DeadlineExceeded(
                    f"no message from the client for {self._idle:g} seconds"
                ) from None
            await meter.add(request)
            yield request


class _Meter:
    """Charges the caller one token per `bytes_per_token` bytes streamed."""

    def __init__(self, quotas: Quotas | None, bytes_per_token: int) -> None:
        self._quotas = quotas
        self._per_token = bytes_per_token
        self._pending = 0
        self._limit: Limit | None = quotas.caller_limit() if quotas is not None else None

    async def add(self, message: Any) -> None:
        if self._quotas is None or self._limit is None or not hasattr(message, "ByteSize"):
            return
        self._pending += message.ByteSize()
        if self._pending >= self._per_token:
            tokens, self._pending = divmod(self._pending, self._per_token)
            await self._quotas.wait_for(self._limit, float(tokens))


class _IdleWatchdog:
    """Ends the call DEADLINE_EXCEEDED when one response waits too long to be written.

    While the handler's generator is suspended at `yield`, gRPC is writing the response;
    a client that stops reading leaves it there. The timer then aborts the call from
    outside. The status is queued behind the responses the client has not read: it learns
    DEADLINE_EXCEEDED if it reads on. The call, and its stream slot, end only when the
    client reads or disconnects (keepalive finds vanished ones), so a principal never
    holds more stalled calls than it has slots.
    """

    def __init__(self, context: Context, timeout: float) -> None:
        self._context = context
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._aborting: asyncio.Task[None] | None = None

    def arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._fire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        self._aborting = asyncio.get_running_loop().create_task(self._abort())

    async def _abort(self) -> None:
        if self._timer is None:
            return  # the write completed after all (disarm() ran before this task)
        error = errors.from_exception(
            DeadlineExceeded(f"the client read nothing for {self._timeout:g} seconds"), ""
        )
        assert error is not None
        log.info("idle stream ended", idle_seconds=self._timeout)
        with contextlib.suppress(Exception):  # abort() raises by design
            await self._context.abort(
                error.code, error.message, trailing_metadata=error.trailing_metadata()
            )

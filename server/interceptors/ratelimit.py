"""Rate limits by client address (before authentication) and by principal (after it).

The address limit runs before any credential is looked up, so a flood of invalid tokens is
throttled without a database lookup each; the principal limit runs before authorization,
so calls on other athletes' resources spend the caller's tokens like any other call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from core import metrics
from domain.errors import ResourceExhausted
from server.clientaddress import peer_ip
from server.interceptors.base import (
    Context,
    Handler,
    Method,
    current_client,
    current_peer,
    is_open_method,
    is_stream,
)
from server.principal import current_principal
from server.ratelimit import Limit, RateLimiter, retry_seconds


def address_key() -> str:
    """The client's address (a trusted proxy's forwarded one, see server.clientaddress)."""
    return f"ip:{current_client.get() or peer_ip(current_peer.get())}"


def caller_key() -> str:
    """Who a limit applies to: the principal once authenticated, else the client address."""
    principal = current_principal.get()
    return address_key() if principal is None else f"principal:{principal.label}"


class Quotas:
    """The bucket settings and per-method costs, shared by the limit layers and streams."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        principal_rate: float,
        principal_burst: float,
        ip_rate: float,
        ip_burst: float,
        method_costs: dict[str, float],
    ) -> None:
        self.limiter = limiter
        self._principal = (principal_rate, principal_burst)
        self._ip = (ip_rate, ip_burst)
        self._costs = {f"/stride.v1.{name}": cost for name, cost in method_costs.items()}

    def cost(self, method_name: str) -> float:
        return self._costs.get(method_name, 1.0)

    def address_limit(self) -> Limit:
        return Limit(address_key(), *self._ip)

    def caller_limit(self) -> Limit:
        """The principal's bucket once authenticated, else the address's."""
        key = caller_key()
        return Limit(key, *(self._principal if key.startswith("principal:") else self._ip))

    async def charge(self, limit: Limit, cost: float, method_name: str) -> None:
        """Take `cost` tokens or raise RESOURCE_EXHAUSTED with the wait."""
        decision = await self.limiter.take([limit], cost)
        if not decision.allowed:
            metrics.RATE_LIMITED.labels(method_name).inc()
            raise ResourceExhausted(
                "rate limit exceeded; retry later",
                retry_after_seconds=retry_seconds(decision),
                reason="RATE_LIMITED",
            )

    async def wait_for(self, limit: Limit, cost: float) -> None:
        """Take `cost` tokens, waiting for the bucket to refill: streams slow down rather
        than fail when their caller runs out of budget."""
        cost = min(cost, limit.burst)
        # A bucket refills with time, not on an event: sleep for the wait it names.
        while not (decision := await self.limiter.take([limit], cost)).allowed:  # noqa: ASYNC110
            await asyncio.sleep(max(0.001, min(decision.retry_after_seconds, 5.0)))


class AddressRateLimitInterceptor(AsyncServerInterceptor):
    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas

    def applies_to(self, method: Method) -> bool:
        return not is_open_method(method.name)

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        quotas = self._quotas
        await quotas.charge(quotas.address_limit(), quotas.cost(method_name), method_name)
        result = method(request_or_iterator, context)
        return result if is_stream(result) else await result


class PrincipalRateLimitInterceptor(AsyncServerInterceptor):
    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas

    def applies_to(self, method: Method) -> bool:
        return not is_open_method(method.name)

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        if current_principal.get() is not None:
            quotas = self._quotas
            await quotas.charge(quotas.caller_limit(), quotas.cost(method_name), method_name)
        result = method(request_or_iterator, context)
        return result if is_stream(result) else await result

"""Rate limits per principal and per client IP, with per-method costs."""

from __future__ import annotations

from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from core import metrics
from domain.errors import ResourceExhausted
from server.interceptors.base import Context, Handler, is_open_method
from server.principal import current_principal
from server.ratelimit import Limit, RateLimiter, retry_seconds


def client_ip(peer: str) -> str:
    """`ipv4:1.2.3.4:5678` -> `1.2.3.4`; `ipv6:[::1]:5678` -> `::1`; anything else as is."""
    kind, _, address = peer.partition(":")
    if kind == "ipv6":
        return address.rpartition("]")[0].lstrip("[")
    if kind == "ipv4":
        return address.rpartition(":")[0]
    return peer


class RateLimitInterceptor(AsyncServerInterceptor):
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
        self._limiter = limiter
        self._principal = (principal_rate, principal_burst)
        self._ip = (ip_rate, ip_burst)
        self._costs = {f"/stride.v1.{name}": cost for name, cost in method_costs.items()}

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        if not is_open_method(method_name):
            principal = current_principal.get()
            limits = [Limit(f"ip:{client_ip(context.peer())}", *self._ip)]
            if principal is not None:
                limits.append(Limit(f"principal:{principal.label}", *self._principal))
            decision = await self._limiter.take(limits, self._costs.get(method_name, 1.0))
            if not decision.allowed:
                metrics.RATE_LIMITED.labels(method_name).inc()
                raise ResourceExhausted(
                    "rate limit exceeded; retry later",
                    retry_after_seconds=retry_seconds(decision),
                    reason="RATE_LIMITED",
                )
        result = method(request_or_iterator, context)
        return result if hasattr(result, "__aiter__") else await result

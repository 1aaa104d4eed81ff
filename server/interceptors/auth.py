"""Authentication (bearer tokens) and authorization (server/authorization.py) for every call."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from core import metrics
from domain.errors import Unauthenticated
from domain.tokens import ATHLETE_TOKEN_PREFIX, digest
from server import authorization
from server.blocking import BlockingRunner
from server.interceptors.base import Context, Handler, is_open_method, metadata_of
from server.principal import ADMIN, Principal, current_principal
from services.tokens import AccessTokenService


class Authenticator:
    """Turns an `authorization` header into a Principal, or raises Unauthenticated."""

    MAX_CACHED = 10_000

    def __init__(
        self,
        admin_digest: str,
        tokens: AccessTokenService,
        run: BlockingRunner,
        cache_seconds: float = 0.0,
    ) -> None:
        self._admin_digest = admin_digest
        self._tokens = tokens
        self._run = run
        self._cache_seconds = cache_seconds
        # token digest -> (principal, token expiry, trusted until); verified tokens only.
        self._cache: dict[str, tuple[Principal, float, float]] = {}

    async def principal(self, header: str | None) -> Principal:
        if not header:
            raise _rejected("MISSING_CREDENTIALS", "missing `authorization: Bearer <token>`")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise _rejected("MALFORMED_CREDENTIALS", "authorization must be `Bearer <token>`")
        presented = digest(secret)
        if hmac.compare_digest(presented, self._admin_digest):
            return ADMIN
        if secret.startswith(ATHLETE_TOKEN_PREFIX):
            now = time.time()
            cached = self._cache.get(presented)
            if cached is not None and now < cached[1] and now < cached[2]:
                return cached[0]
            token = await self._run(self._tokens.authenticate, secret)
            if token is not None:
                principal = Principal(athlete_id=token.athlete_id)
                if self._cache_seconds > 0:
                    if len(self._cache) >= self.MAX_CACHED:
                        self._cache.clear()
                    expiry = token.expire_time.timestamp() if token.expire_time else math.inf
                    self._cache[presented] = (principal, expiry, now + self._cache_seconds)
                return principal
        raise _rejected("INVALID_TOKEN", "the token is unknown, revoked or expired")


def _rejected(reason: str, message: str) -> Unauthenticated:
    metrics.AUTH_FAILURES.labels(reason).inc()
    return Unauthenticated(message, reason=reason)


class AuthInterceptor(AsyncServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        if not (is_open_method(method_name) or authorization.is_public(method_name)):
            header = metadata_of(context).get("authorization")
            principal = await self._authenticator.principal(header)
            current_principal.set(principal)
            if hasattr(request_or_iterator, "__aiter__"):
                request_or_iterator = await _authorize_stream(
                    request_or_iterator, principal, method_name
                )
            else:
                authorization.authorize(principal, method_name, request_or_iterator)
        result = method(request_or_iterator, context)
        return result if hasattr(result, "__aiter__") else await result


async def _authorize_stream(
    requests: AsyncIterator[Any], principal: Principal, method_name: str
) -> AsyncIterator[Any]:
    """Check a client stream on its first message (the header) before the handler runs."""
    iterator = aiter(requests)
    first = await anext(iterator, None)
    authorization.authorize(principal, method_name, first)
    return _prepend(first, iterator)


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not None:
        yield first
    async for request in rest:
        yield request

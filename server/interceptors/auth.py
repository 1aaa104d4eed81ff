"""Authentication (bearer tokens) and authorization (server/authorization.py) for every call."""

from __future__ import annotations

import datetime as dt
import hmac
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

from grpc_interceptor.server import AsyncServerInterceptor

from core import metrics
from domain.errors import Unauthenticated
from domain.tokens import ATHLETE_TOKEN_PREFIX, BearerToken, digest
from server import authorization
from server.blocking import BlockingRunner
from server.interceptors.base import (
    Context,
    Handler,
    Method,
    is_open_method,
    is_stream,
    metadata_of,
)
from server.principal import ADMIN, Principal, current_principal
from services.tokens import AccessTokenService


class _Entry(NamedTuple):
    principal: Principal
    expires_at: float  # the token's own expiry (inf: never)
    trusted_until: float  # when it must be looked up again


class Authenticator:
    """Turns an `authorization` header into a Principal, or raises Unauthenticated.

    Verified athlete tokens are trusted for `cache_seconds` without a database lookup. When
    this process revokes a token (through `tokens`), every cached token of that athlete is
    forgotten at once, which covers the tokens the revoked one created; a revocation made by
    another process takes effect here when the entry's `cache_seconds` run out. `clock`
    (seconds since the epoch) decides both the cache periods and token expiry.
    """

    MAX_CACHED = 10_000

    def __init__(
        self,
        admin_digest: str,
        tokens: AccessTokenService,
        run: BlockingRunner,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._admin_digest = admin_digest
        self._tokens = tokens
        self._run = run
        self._cache_seconds = cache_seconds
        self._clock = clock
        # Revocations arrive on executor threads, lookups on the event loop.
        self._lock = threading.Lock()
        # token digest -> entry, and athlete id -> digests of that athlete's cached tokens.
        self._cache: dict[str, _Entry] = {}
        self._by_athlete: dict[str, set[str]] = {}
        # Bumped by every revocation: a lookup that overlapped one is not cached.
        self._generation = 0
        tokens.on_revoke(self.forget_athlete)

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
            now = self._clock()
            cached = self._cached(presented, now)
            if cached is not None:
                return cached
            generation = self._generation
            token = await self._run(
                self._tokens.authenticate, secret, dt.datetime.fromtimestamp(now, dt.UTC)
            )
            if token is not None:
                principal = Principal(
                    athlete_id=token.athlete_id,
                    token=BearerToken(id=token.id, expire_time=token.expire_time),
                )
                expiry = token.expire_time.timestamp() if token.expire_time else math.inf
                self._remember(
                    presented, _Entry(principal, expiry, now + self._cache_seconds), generation
                )
                return principal
        raise _rejected("INVALID_TOKEN", "the token is unknown, revoked or expired")

    def forget_athlete(self, athlete_id: str) -> None:
        """Drop every cached token of the athlete (some of them were revoked)."""
        with self._lock:
            self._generation += 1
            for presented in self._by_athlete.pop(athlete_id, ()):
                self._cache.pop(presented, None)

    def _cached(self, presented: str, now: float) -> Principal | None:
        with self._lock:
            entry = self._cache.get(presented)
            if entry is None:
                return None
            if now < entry.expires_at and now < entry.trusted_until:
                return entry.principal
            del self._cache[presented]
            self._unindex(entry.principal, presented)
            return None

    def _remember(self, presented: str, entry: _Entry, generation: int) -> None:
        if self._cache_seconds <= 0:
            return
        athlete_id = entry.principal.athlete_id
        assert athlete_id is not None
        with self._lock:
            if generation != self._generation:
                return  # a revocation overlapped the lookup: it may have found a revoked token
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
                self._by_athlete.clear()
            self._cache[presented] = entry
            self._by_athlete.setdefault(athlete_id, set()).add(presented)

    def _unindex(self, principal: Principal, presented: str) -> None:
        if principal.athlete_id is None:
            return
        digests = self._by_athlete.get(principal.athlete_id)
        if digests is not None:
            digests.discard(presented)
            if not digests:
                del self._by_athlete[principal.athlete_id]


def _rejected(reason: str, message: str) -> Unauthenticated:
    metrics.AUTH_FAILURES.labels(reason).inc()
    return Unauthenticated(message, reason=reason)


class AuthenticationInterceptor(AsyncServerInterceptor):
    """Who is calling: sets `current_principal` (left unset for open and public methods)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    def applies_to(self, method: Method) -> bool:
        return not (is_open_method(method.name) or authorization.is_public(method.name))

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        header = metadata_of(context).get("authorization")
        current_principal.set(await self._authenticator.principal(header))
        result = method(request_or_iterator, context)
        return result if is_stream(result) else await result


class AuthorizationInterceptor(AsyncServerInterceptor):
    """May the principal call this method on this resource (server/authorization.py)."""

    def applies_to(self, method: Method) -> bool:
        return not is_open_method(method.name)

    async def intercept(
        self, method: Handler, request_or_iterator: Any, context: Context, method_name: str
    ) -> Any:
        principal = current_principal.get()
        if principal is not None:
            if is_stream(request_or_iterator):
                request_or_iterator = await _authorize_stream(
                    request_or_iterator, principal, method_name
                )
            else:
                authorization.authorize(principal, method_name, request_or_iterator)
        result = method(request_or_iterator, context)
        return result if is_stream(result) else await result


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

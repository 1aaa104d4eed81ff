"""An athlete's Strava access token, refreshed ahead of expiry and after a 401, with the
newest refresh token always stored (Strava rotates them)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
import structlog

from domain.connections import ConnectionState, StravaConnection
from domain.jobs import JobFailure
from storage.database import Database
from storage.repositories.strava import StravaConnectionRepository
from tasks.strava.client import StravaClient
from tasks.strava.crypto import TokenCipher
from tasks.strava.errors import StravaError, Unauthorized

log = structlog.get_logger(__name__)
T = TypeVar("T")
# Longer than a refresh can take (timeouts x attempts), so a holder that died frees it.
REFRESH_LOCK_SECONDS = 120


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _revoked(athlete_id: str) -> JobFailure:
    return JobFailure(
        "FAILED_PRECONDITION",
        "STRAVA_ACCESS_REVOKED",
        f"Strava refused athlete {athlete_id}'s tokens (access revoked): connect again",
    )


class AccessTokens:
    def __init__(
        self,
        db: Database,
        client: StravaClient,
        cipher: TokenCipher,
        clock: Callable[[], dt.datetime] = _now,
        *,
        redis_client: redis.Redis | None = None,
        key_prefix: str = "stride:",
        on_revoked: Callable[[str], object] | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.cipher = cipher
        self.clock = clock
        self.redis = redis_client
        self.key_prefix = key_prefix
        self.on_revoked = on_revoked
        self._local_locks: dict[str, threading.Lock] = {}
        self._local_locks_guard = threading.Lock()

    def load(self, athlete_id: str) -> StravaConnection:
        """The connection, which must be CONNECTED (JobFailure otherwise)."""
        with self.db.read_primary() as session:
            stored = StravaConnectionRepository(session).get(athlete_id)
        if stored is None or stored.state != ConnectionState.CONNECTED:
            raise JobFailure(
                "FAILED_PRECONDITION",
                "STRAVA_NOT_CONNECTED",
                f"athlete {athlete_id} is not connected to Strava",
            )
        return stored

    def current(self, athlete_id: str) -> str:
        """A usable access token, refreshed first when it expires soon."""
        stored = self.load(athlete_id)
        if stored.needs_refresh(self.clock()):
            return self.refresh(stored)
        return self.cipher.decrypt(stored.access_token_encrypted)

    def refresh(self, seen: StravaConnection, *, rejected: bool = False) -> str:
        """New tokens from Strava, stored; `seen` is the connection as the caller read it,
        `rejected` when Strava refused its access token (refresh even if not expiring).

        One refresh per athlete at a time (a Redis lock across workers, a process lock
        without Redis): Strava rotates refresh tokens, so a second refresh with the token
        the first one retired would fail and look like a revocation. A caller that waited
        uses the tokens the one before it stored."""
        with self._refresh_lock(seen.athlete_id):
            latest = self.load(seen.athlete_id)
            changed = latest.access_token_encrypted != seen.access_token_encrypted
            if changed or not (rejected or latest.needs_refresh(self.clock())):
                return self.cipher.decrypt(latest.access_token_encrypted)
            try:
                tokens = self.client.refresh(self.cipher.decrypt(latest.refresh_token_encrypted))
            except StravaError as exc:
                if exc.status not in (400, 401):
                    raise  # transient (retried by the task)
                self.mark_revoked(seen.athlete_id)
                raise _revoked(seen.athlete_id) from None
            with self.db.transaction() as session:
                repo = StravaConnectionRepository(session)
                current = repo.get(seen.athlete_id, lock=True)
                if current is None or current.state != ConnectionState.CONNECTED:
                    raise _revoked(seen.athlete_id)  # disconnected meanwhile
                repo.save(
                    dataclasses.replace(
                        current,
                        access_token_encrypted=self.cipher.encrypt(tokens.access_token),
                        refresh_token_encrypted=self.cipher.encrypt(tokens.refresh_token),
                        access_token_expire_time=dt.datetime.fromtimestamp(
                            tokens.expires_at, dt.UTC
                        ),
                    )
                )
        log.info("strava tokens refreshed", athlete_id=seen.athlete_id)
        return tokens.access_token

    @contextlib.contextmanager
    def _refresh_lock(self, athlete_id: str) -> Iterator[None]:
        with self._local_locks_guard:
            local = self._local_locks.setdefault(athlete_id, threading.Lock())
        with local:
            if self.redis is None:
                yield
                return
            name = f"{self.key_prefix}strava:refresh:{athlete_id}"
            lock = self.redis.lock(name, timeout=REFRESH_LOCK_SECONDS)
            try:
                held = lock.acquire(blocking_timeout=REFRESH_LOCK_SECONDS)
            except redis.RedisError:
                held = False  # Redis down: this process's lock is all there is
            try:
                yield
            finally:
                if held:
                    with contextlib.suppress(redis.RedisError):
                        lock.release()

    def call(self, athlete_id: str, request: Callable[[str], T]) -> T:
        """`request(access_token)`; after a 401, once more with refreshed tokens. A second
        401 means the athlete revoked access; a 401 for a missing permission (the athlete
        unticked activity access) is no revocation."""
        seen = self.load(athlete_id)
        if seen.needs_refresh(self.clock()):
            token = self.refresh(seen)
        else:
            token = self.cipher.decrypt(seen.access_token_encrypted)
        try:
            return request(token)
        except Unauthorized as exc:
            _check_permission(athlete_id, exc)
            # Unless another worker refreshed since `seen`, refresh now.
            token = self.refresh(seen, rejected=True)
        try:
            return request(token)
        except Unauthorized as exc:
            _check_permission(athlete_id, exc)
            self.mark_revoked(athlete_id)
            raise _revoked(athlete_id) from None

    def mark_revoked(self, athlete_id: str) -> None:
        """The connection becomes REVOKED; the first time, `on_revoked` runs (Strava's API
        agreement: an athlete who withdrew access has their Strava data deleted)."""
        with self.db.transaction() as session:
            repo = StravaConnectionRepository(session)
            stored = repo.get(athlete_id, lock=True)
            newly = stored is not None and stored.state == ConnectionState.CONNECTED
            if stored is not None and newly:
                repo.save(dataclasses.replace(stored, state=ConnectionState.REVOKED))
        if newly:
            log.warning("strava access revoked", athlete_id=athlete_id)
            if self.on_revoked is not None:
                self.on_revoked(athlete_id)


def _check_permission(athlete_id: str, exc: Unauthorized) -> None:
    """Strava answers 401 with `…_permission` / `missing` when a scope was not granted."""
    if "_permission" in str(exc.body):
        raise JobFailure(
            "FAILED_PRECONDITION",
            "STRAVA_SCOPE_MISSING",
            f"athlete {athlete_id} did not grant Stride access to activities on Strava:"
            " connect again and keep 'View data about your activities' ticked",
        ) from None

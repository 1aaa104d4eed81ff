"""An athlete's Strava access token, refreshed ahead of expiry and after a 401, with the
newest refresh token always stored (Strava rotates them)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TypeVar

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
    ) -> None:
        self.db = db
        self.client = client
        self.cipher = cipher
        self.clock = clock

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

    def refresh(self, stored: StravaConnection) -> str:
        """New tokens from Strava, stored. Two workers may refresh at once: Strava either
        hands both the same tokens or rejects the older refresh token, and then the tokens
        the other worker stored are used."""
        try:
            tokens = self.client.refresh(self.cipher.decrypt(stored.refresh_token_encrypted))
        except StravaError as exc:
            if exc.status not in (400, 401):
                raise  # transient (retried by the task)
            latest = self.load(stored.athlete_id)
            if latest.refresh_token_encrypted != stored.refresh_token_encrypted:
                return self.cipher.decrypt(latest.access_token_encrypted)
            self.mark_revoked(stored.athlete_id)
            raise _revoked(stored.athlete_id) from None
        with self.db.transaction() as session:
            repo = StravaConnectionRepository(session)
            latest_row = repo.get(stored.athlete_id, lock=True)
            if latest_row is None:  # disconnected meanwhile
                raise _revoked(stored.athlete_id)
            repo.save(
                dataclasses.replace(
                    latest_row,
                    access_token_encrypted=self.cipher.encrypt(tokens.access_token),
                    refresh_token_encrypted=self.cipher.encrypt(tokens.refresh_token),
                    access_token_expire_time=dt.datetime.fromtimestamp(tokens.expires_at, dt.UTC),
                )
            )
        log.info("strava tokens refreshed", athlete_id=stored.athlete_id)
        return tokens.access_token

    def call(self, athlete_id: str, request: Callable[[str], T]) -> T:
        """`request(access_token)`; after a 401, once more with refreshed tokens; a second
        401 means the athlete revoked access."""
        try:
            return request(self.current(athlete_id))
        except Unauthorized:
            token = self.refresh(self.load(athlete_id))
        try:
            return request(token)
        except Unauthorized:
            self.mark_revoked(athlete_id)
            raise _revoked(athlete_id) from None

    def mark_revoked(self, athlete_id: str) -> None:
        with self.db.transaction() as session:
            repo = StravaConnectionRepository(session)
            stored = repo.get(athlete_id, lock=True)
            if stored is not None:
                repo.save(dataclasses.replace(stored, state=ConnectionState.REVOKED))
        log.warning("strava access revoked", athlete_id=athlete_id)

"""Use cases for athlete access tokens: issue, list, revoke, and look up for authentication."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from domain import names
from domain.errors import NotFound, Unauthenticated, Violations
from domain.tokens import (
    ATHLETE_TOKEN_PREFIX,
    AccessToken,
    BearerToken,
    IssuedToken,
    digest,
    new_secret,
)
from domain.validation import check_text
from services.athletes import RESOURCE as ATHLETE_RESOURCE
from services.paging import Paging
from storage.database import Database
from storage.repositories.athletes import AthleteRepository
from storage.repositories.tokens import AccessTokenRepository

RESOURCE = "stride.dev/AccessToken"
# Recording every use would turn each read into a write; once a minute is enough to audit.
LAST_USE_RESOLUTION = dt.timedelta(minutes=1)


RevocationListener = Callable[[str], None]
"""Called with an athlete id after tokens of that athlete were revoked (committed)."""


class AccessTokenService:
    def __init__(self, db: Database, paging: Paging) -> None:
        self.db = db
        self.paging = paging
        self._listeners: list[RevocationListener] = []
        self._listeners_lock = threading.Lock()

    def on_revoke(self, listener: RevocationListener) -> None:
        """Have `listener` told (in the revoking thread, after commit) whenever tokens of an
        athlete are revoked, so that process-local caches can forget them at once."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def issue(
        self,
        athlete_id: str,
        display_name: str,
        expire_time: dt.datetime | None,
        creator: BearerToken | None,
    ) -> IssuedToken:
        """A new token for the athlete. `creator` is the athlete token making the call (None
        for the operator): the new token expires no later than it (by default exactly when it
        does) and is revoked with it."""
        violations = Violations()
        check_text(
            violations, "access_token.display_name", display_name, max_length=200, required=False
        )
        if creator is not None and creator.expire_time is not None:
            if expire_time is None:
                expire_time = creator.expire_time
            elif expire_time > creator.expire_time:
                violations.add(
                    "access_token.expire_time",
                    "must not be later than the expiry of the token making this call "
                    f"({_rfc3339(creator.expire_time)})",
                )
        now = dt.datetime.now(dt.UTC)
        if creator is not None and creator.expire_time is not None and creator.expire_time <= now:
            raise _invalid_token()
        if expire_time is not None and expire_time <= now:
            violations.add("access_token.expire_time", "must be in the future")
        violations.raise_if_any()
        secret = new_secret(ATHLETE_TOKEN_PREFIX)
        try:
            with self.db.transaction() as session:
                # Held until commit: the athlete cannot be deleted under the new token.
                if not AthleteRepository(session).exists(athlete_id, share=True):
                    raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
                repo = AccessTokenRepository(session)
                # The creator may have been revoked since the call was authenticated (another
                # replica, or a concurrent call): then it may not create anything.
                if creator is not None and not repo.lock(creator.id):
                    raise _invalid_token()
                token = repo.add(
                    athlete_id,
                    display_name,
                    digest(secret),
                    expire_time,
                    parent_token_id=None if creator is None else creator.id,
                )
        except IntegrityError:
            # The athlete (and with it every token) or the creating token was deleted
            # between the checks above and the insert.
            if creator is not None:
                raise _invalid_token() from None
            raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id)) from None
        return IssuedToken(token, secret)

    def revoke(self, athlete_id: str, token_id: str) -> None:
        """Delete a token and, transitively, every token created through it."""
        with self.db.transaction() as session:
            if not AccessTokenRepository(session).delete(athlete_id, token_id):
                raise NotFound(RESOURCE, names.access_token_name(athlete_id, token_id))
        self.revoked_all_of(athlete_id)

    def revoked_all_of(self, athlete_id: str) -> None:
        """Tell the listeners that tokens of this athlete are gone (a revocation, or the
        athlete's deletion, which cascades to their tokens)."""
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(athlete_id)

    def list_page(
        self, athlete_id: str, page_size: int, page_token: str
    ) -> tuple[list[AccessToken], str]:
        violations = Violations()
        size = self.paging.size(page_size, violations)
        violations.raise_if_any()
        query = f"accessTokens|{athlete_id}"
        after = self.paging.time_key(page_token, query)
        with self.db.read_only() as session:
            if not AthleteRepository(session).exists(athlete_id):
                raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
            rows = AccessTokenRepository(session).list(athlete_id, after, size + 1)
        token = self.paging.next_token(query, rows, size, lambda t: (t.create_time, t.id))
        return rows[:size], token

    def authenticate(self, secret: str, now: dt.datetime | None = None) -> AccessToken | None:
        """The live token for a presented secret; None when unknown, revoked or expired
        (at `now`, by default the current time)."""
        now = dt.datetime.now(dt.UTC) if now is None else now
        # A plain read: on SQLite a write transaction would queue every authenticated call
        # behind whatever write is running.
        with self.db.read_primary() as session:
            token = AccessTokenRepository(session).find_by_hash(digest(secret))
        if token is None or (token.expire_time is not None and token.expire_time <= now):
            return None
        if token.last_use_time is None or now - token.last_use_time > LAST_USE_RESOLUTION:
            with self.db.transaction() as session:
                AccessTokenRepository(session).touch(token.id, now)
        return token


def _invalid_token() -> Unauthenticated:
    # The same answer the authenticator gives for a token that is unknown, revoked or expired.
    return Unauthenticated("the token is unknown, revoked or expired", reason="INVALID_TOKEN")


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

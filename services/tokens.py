"""Use cases for athlete access tokens: issue, list, revoke, and look up for authentication."""

from __future__ import annotations

import datetime as dt

from domain import names
from domain.errors import NotFound, Violations
from domain.tokens import ATHLETE_TOKEN_PREFIX, AccessToken, IssuedToken, digest, new_secret
from domain.validation import check_text
from services.athletes import RESOURCE as ATHLETE_RESOURCE
from services.paging import Paging
from storage.database import Database
from storage.repositories.athletes import AthleteRepository
from storage.repositories.tokens import AccessTokenRepository

RESOURCE = "stride.dev/AccessToken"
# Recording every use would turn each read into a write; once a minute is enough to audit.
LAST_USE_RESOLUTION = dt.timedelta(minutes=1)


class AccessTokenService:
    def __init__(self, db: Database, paging: Paging) -> None:
        self.db = db
        self.paging = paging

    def issue(
        self, athlete_id: str, display_name: str, expire_time: dt.datetime | None
    ) -> IssuedToken:
        violations = Violations()
        check_text(
            violations, "access_token.display_name", display_name, max_length=200, required=False
        )
        if expire_time is not None and expire_time <= dt.datetime.now(dt.UTC):
            violations.add("access_token.expire_time", "must be in the future")
        violations.raise_if_any()
        secret = new_secret(ATHLETE_TOKEN_PREFIX)
        with self.db.transaction() as session:
            if not AthleteRepository(session).exists(athlete_id):
                raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
            token = AccessTokenRepository(session).add(
                athlete_id, display_name, digest(secret), expire_time
            )
        return IssuedToken(token, secret)

    def revoke(self, athlete_id: str, token_id: str) -> None:
        with self.db.transaction() as session:
            if not AccessTokenRepository(session).delete(athlete_id, token_id):
                raise NotFound(RESOURCE, names.access_token_name(athlete_id, token_id))

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

    def authenticate(self, secret: str) -> AccessToken | None:
        """The live token for a presented secret; None when unknown, revoked or expired."""
        now = dt.datetime.now(dt.UTC)
        with self.db.transaction() as session:
            repo = AccessTokenRepository(session)
            token = repo.find_by_hash(digest(secret))
            if token is None or (token.expire_time is not None and token.expire_time <= now):
                return None
            if token.last_use_time is None or now - token.last_use_time > LAST_USE_RESOLUTION:
                repo.touch(token.id, now)
            return token

"""OAuth: authorization codes, token exchange, refresh with rotation, deauthorization.

Every authorization is a *grant* (a token family): its current access and refresh tokens,
the scopes the athlete granted, and the refresh tokens it rotated out but still accepts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.strava_sim.config import SimConfig
from tests.strava_sim.errors import ApiError, bad_request, invalid_token

SCOPES = (
    "read",
    "read_all",
    "profile:read_all",
    "profile:write",
    "activity:read",
    "activity:read_all",
    "activity:write",
)


def parse_scopes(text: str | None) -> list[str]:
    """Strava's comma-separated scope list (spaces tolerated); unknown names are refused."""
    if not text:
        return ["read"]
    names = [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]
    for name in names:
        if name not in SCOPES:
            raise bad_request("Application", "scope")
    return list(dict.fromkeys(names))


@dataclass
class Grant:
    athlete_id: int
    scopes: frozenset[str]
    access_token: str
    expires_at: int
    refresh_token: str
    retired_refresh: set[str] = field(default_factory=set)
    revoked: bool = False

    def can_read_activities(self) -> bool:
        return bool(self.scopes & {"activity:read", "activity:read_all"})

    def can_read_private(self) -> bool:
        return "activity:read_all" in self.scopes


@dataclass(frozen=True)
class Code:
    athlete_id: int
    scopes: frozenset[str]
    expires_at: float


class Auth:
    """Tokens of the one registered application. Callers hold the simulator's lock."""

    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.codes: dict[str, Code] = {}
        self.grants: list[Grant] = []
        self.by_access: dict[str, tuple[Grant, int]] = {}  # token -> (grant, its expiry)
        self.by_refresh: dict[str, Grant] = {}

    # -- the application ---------------------------------------------------------------------

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if client_id is None or client_id.strip() != str(self.config.client_id):
            raise bad_request("Application", "client_id")
        if client_secret != self.config.client_secret:
            raise ApiError(
                401, "Authorization Error", [("Application", "client_secret", "invalid")]
            )

    def connected_athletes(self) -> set[int]:
        return {grant.athlete_id for grant in self.grants if not grant.revoked}

    # -- codes and tokens --------------------------------------------------------------------

    def issue_code(self, athlete_id: int, scopes: Iterable[str]) -> str:
        code = secrets.token_hex(20)
        self.codes[code] = Code(athlete_id, frozenset(scopes), self.clock() + self.config.code_ttl)
        return code

    def _new_grant(self, athlete_id: int, scopes: frozenset[str]) -> Grant:
        now = int(self.clock())
        grant = Grant(
            athlete_id=athlete_id,
            scopes=scopes,
            access_token=secrets.token_hex(20),
            expires_at=now + self.config.access_token_ttl,
            refresh_token=secrets.token_hex(20),
        )
        self.grants.append(grant)
        self.by_access[grant.access_token] = (grant, grant.expires_at)
        self.by_refresh[grant.refresh_token] = grant
        return grant

    def exchange(self, code: str | None) -> Grant:
        """``grant_type=authorization_code``: a code is good once, for ``code_ttl`` seconds."""
        entry = self.codes.pop(code or "", None)
        if entry is None or entry.expires_at < self.clock():
            raise bad_request("AuthorizationCode", "code")
        limit = self.config.max_connected_athletes
        connected = self.connected_athletes()
        if limit is not None and entry.athlete_id not in connected and len(connected) >= limit:
            raise ApiError(
                403, "Limit of connected athletes exceeded", [("Athlete", "", "limit exceeded")]
            )
        return self._new_grant(entry.athlete_id, entry.scopes)

    def refresh(self, refresh_token: str | None) -> Grant:
        """``grant_type=refresh_token``.

        While the current access token has more than ``refresh_reuse_window`` seconds left, the
        same tokens come back. Otherwise a new access *and* refresh token are issued; the old
        refresh token stops at once (``immediate``) or keeps working until the new access
        token is used (``until_used``). Old access tokens stay valid until they expire.
        """
        grant = self.by_refresh.get(refresh_token or "")
        if grant is None or grant.revoked:
            raise bad_request("RefreshToken", "refresh_token")
        if refresh_token != grant.refresh_token and refresh_token not in grant.retired_refresh:
            raise bad_request("RefreshToken", "refresh_token")
        now = int(self.clock())
        if grant.expires_at - now > self.config.refresh_reuse_window:
            return grant
        if self.config.refresh_policy == "until_used":
            grant.retired_refresh.add(grant.refresh_token)
        else:
            self.by_refresh.pop(grant.refresh_token, None)
            for old in grant.retired_refresh:
                self.by_refresh.pop(old, None)
            grant.retired_refresh.clear()
        grant.access_token = secrets.token_hex(20)
        grant.expires_at = now + self.config.access_token_ttl
        grant.refresh_token = secrets.token_hex(20)
        self.by_access[grant.access_token] = (grant, grant.expires_at)
        self.by_refresh[grant.refresh_token] = grant
        return grant

    def authenticate(self, access_token: str | None) -> Grant:
        """The grant behind a bearer token: 401 when unknown, revoked or expired."""
        entry = self.by_access.get(access_token or "")
        if entry is None:
            raise invalid_token()
        grant, expires_at = entry
        if grant.revoked or expires_at <= self.clock():
            raise invalid_token()
        if access_token == grant.access_token and grant.retired_refresh:
            for old in grant.retired_refresh:  # the new tokens reached their owner
                self.by_refresh.pop(old, None)
            grant.retired_refresh.clear()
        return grant

    def deauthorize(self, access_token: str | None) -> int:
        """``POST /oauth/deauthorize``: revokes every token of that athlete for this app."""
        grant = self.authenticate(access_token)
        self.revoke_athlete(grant.athlete_id)
        return grant.athlete_id

    def revoke_athlete(self, athlete_id: int) -> bool:
        revoked = False
        for grant in self.grants:
            if grant.athlete_id == athlete_id and not grant.revoked:
                grant.revoked = True
                revoked = True
        return revoked

    def expire(self, athlete_id: int | None = None) -> int:
        """Force current access tokens (of one athlete, or all) to be expired now."""
        now = int(self.clock())
        count = 0
        for token, (grant, expires_at) in list(self.by_access.items()):
            if (athlete_id is None or grant.athlete_id == athlete_id) and expires_at >= now:
                self.by_access[token] = (grant, now - 1)
                if token == grant.access_token:
                    grant.expires_at = now - 1
                count += 1
        return count

    # -- bodies ------------------------------------------------------------------------------

    def token_body(self, grant: Grant, athlete: dict[str, Any] | None = None) -> dict[str, Any]:
        now = int(self.clock())
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_at": grant.expires_at,
            "expires_in": max(0, grant.expires_at - now),
            "refresh_token": grant.refresh_token,
            "access_token": grant.access_token,
        }
        if athlete is not None:
            body["athlete"] = athlete
        return body

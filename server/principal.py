"""Who is calling: set by the auth interceptor, read by logging, limits and error reports."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from domain.tokens import BearerToken


@dataclass(frozen=True)
class Principal:
    """Either the operator (`admin`) or an athlete acting through an access token.

    `token` is the athlete's access token (its id and expiry) the call was authenticated
    with; the operator has none."""

    athlete_id: str | None
    token: BearerToken | None = None

    @property
    def is_admin(self) -> bool:
        return self.athlete_id is None

    @property
    def label(self) -> str:
        return "admin" if self.athlete_id is None else f"athletes/{self.athlete_id}"


ADMIN = Principal(athlete_id=None)

current_principal: ContextVar[Principal | None] = ContextVar("principal", default=None)

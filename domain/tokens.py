"""Bearer secrets: generated with a recognisable prefix, stored only as digests."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

ATHLETE_TOKEN_PREFIX = "stride_at_"
ADMIN_TOKEN_PREFIX = "stride_admin_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """SHA-256 is enough: the secrets are 256-bit random values, not passwords."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class AccessToken:
    id: str
    athlete_id: str
    display_name: str
    expire_time: dt.datetime | None
    create_time: dt.datetime
    last_use_time: dt.datetime | None
    # The token that created this one; None when the operator created it.
    parent_token_id: str | None = None


@dataclass(frozen=True)
class BearerToken:
    """The athlete access token a call was authenticated with.

    A token may only create tokens that expire no later than itself, and what it creates
    is revoked with it (lineage through `AccessToken.parent_token_id`)."""

    id: str
    expire_time: dt.datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """A token together with its secret, which exists only in the creation response."""

    token: AccessToken
    secret: str

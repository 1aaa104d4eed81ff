"""An athlete's link to Strava: its states, what a sync asks for, and the failures the
SyncService reports (pure: no database, no HTTP)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import FailedPrecondition

RESOURCE = "stride.dev/StravaConnection"
# Incremental syncs start this long before the newest activity already synced: Strava
# lists by start time, and an activity uploaded late (a watch synced days later) or
# backdated starts before activities already seen.
INCREMENTAL_PADDING = dt.timedelta(days=1)
# Tokens are refreshed when they expire within this (Strava's live six hours).
REFRESH_AHEAD = dt.timedelta(minutes=30)


class ConnectionState(StrEnum):
    """Stored: CONNECTED, REVOKED. The others are what jobs make of it (see ConnectionView)."""

    NOT_CONNECTED = "not_connected"
    CONNECTED = "connected"
    # Strava refused the stored tokens (the athlete revoked access): connect again.
    REVOKED = "revoked"
    CONNECTING = "connecting"
    DISCONNECTING = "disconnecting"


@dataclass(frozen=True)
class StravaConnection:
    """What is stored once a connect job succeeded (tokens stay encrypted here)."""

    athlete_id: str
    strava_athlete_id: int
    state: ConnectionState
    granted_scopes: tuple[str, ...]
    access_token_encrypted: bytes
    refresh_token_encrypted: bytes
    access_token_expire_time: dt.datetime
    connect_time: dt.datetime
    last_sync_time: dt.datetime | None = None
    # Start time of the newest activity synced: where the next incremental sync starts.
    sync_cursor: dt.datetime | None = None

    def needs_refresh(self, now: dt.datetime) -> bool:
        return self.access_token_expire_time <= now + REFRESH_AHEAD


@dataclass(frozen=True)
class ConnectionView:
    """The connection as GetStravaConnection shows it: the stored link, if any, in the
    state its running jobs give it."""

    athlete_id: str
    state: ConnectionState
    stored: StravaConnection | None = None


def incremental_start(cursor: dt.datetime | None) -> dt.datetime | None:
    """Where an incremental sync starts; None: from the beginning (never synced)."""
    return None if cursor is None else cursor - INCREMENTAL_PADDING


def parse_scopes(text: str) -> tuple[str, ...]:
    return tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))


class StravaNotConfigured(FailedPrecondition):
    reason = "STRAVA_NOT_CONFIGURED"

    def __init__(self) -> None:
        super().__init__(
            "this deployment has no Strava application (STRIDE_STRAVA_CLIENT_ID and"
            " STRIDE_STRAVA_CLIENT_SECRET)"
        )


class StravaNotConnected(FailedPrecondition):
    reason = "STRAVA_NOT_CONNECTED"

    def __init__(self, athlete_id: str, state: ConnectionState) -> None:
        super().__init__(f"athlete {athlete_id}'s Strava connection is {state}, not CONNECTED")


# Scopes that let Stride read an athlete's activities (read_all adds "Only You" ones).
ACTIVITY_SCOPES = frozenset({"activity:read", "activity:read_all"})


class StravaScopeMissing(FailedPrecondition):
    reason = "STRAVA_SCOPE_MISSING"

    def __init__(self, athlete_id: str) -> None:
        super().__init__(
            f"athlete {athlete_id} did not grant access to activities on Strava: connect again"
            " and keep 'View data about your activities' ticked"
        )


class StravaDisconnecting(FailedPrecondition):
    reason = "STRAVA_DISCONNECTING"

    def __init__(self, athlete_id: str) -> None:
        super().__init__(
            f"athlete {athlete_id}'s Strava connection is being removed: connect again once"
            " the disconnect job has ended"
        )


class SyncAlreadyActive(FailedPrecondition):
    reason = "SYNC_ALREADY_ACTIVE"

    def __init__(self, job_name: str) -> None:
        super().__init__(f"a sync is already queued, running or waiting: {job_name}")
        self.job_name = job_name

    def error_metadata(self) -> dict[str, str]:
        return {"job": self.job_name}

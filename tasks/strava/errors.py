"""What the Strava client raises. Every error is a StravaError; the ones a job reacts to
(wait until a time, reconnect the athlete) carry what it needs."""

from __future__ import annotations

from typing import Any

from domain.jobs import ResumeLater


class StravaError(Exception):
    """A call failed: an unexpected status, a body that is not JSON, retries used up."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        Exception.__init__(self, message)  # not super(): WaitUntil is also a ResumeLater
        self.status = status
        self.body = body


class Unauthorized(StravaError):
    """401: the access token expired or was revoked (refresh it, or the athlete reconnects)."""


TokenExpired = Unauthorized


class NotFound(StravaError):
    """404: the resource does not exist or this token may not see it."""


class WaitUntil(StravaError, ResumeLater):
    """Strava may not be called before ``resume_at`` (epoch seconds); a job waits."""

    def __init__(self, message: str, resume_at: float, **kwargs: Any) -> None:
        StravaError.__init__(self, message, **kwargs)
        self.resume_at = resume_at


class RateLimited(WaitUntil):
    """429 from Strava; ``resume_at`` is when the exhausted window resets."""


class BudgetExhausted(WaitUntil):
    """The shared budget is spent: Strava was not called; ``resume_at`` is when it refills."""


class CircuitOpen(WaitUntil):
    """Strava kept failing: the circuit is open and no call is made before ``resume_at``."""

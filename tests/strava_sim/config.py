"""The simulator's settings: one frozen dataclass, shared by the CLI and in-process use."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Strava's published defaults (STRAVA.md, "Rate limits"): (15-minute, daily).
DEFAULT_OVERALL_LIMITS = (200, 2000)
DEFAULT_READ_LIMITS = (100, 1000)
# A fixed end of history so the same seed always gives the same activities (dates included).
DEFAULT_HISTORY_END = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes the simulated Strava.

    World: ``seed``, ``athletes``, ``activities`` (per athlete), ``history_end`` and
    ``history_days`` place the activities in time; ``stream_step`` is the seconds between
    stream samples (1 is Strava's 1 Hz; larger values shrink streams for fast tests).

    OAuth: one registered application (``client_id``/``client_secret``). Access tokens live
    ``access_token_ttl`` seconds; a refresh while more than ``refresh_reuse_window`` seconds
    remain returns the current tokens (Strava's rule, one hour). Otherwise the refresh token
    rotates, and with ``refresh_policy="immediate"`` (Strava's documented rule: "once a new
    refresh token code has been returned, the older code will no longer work") the old one
    dies at once; ``"until_used"`` keeps it working until the new access token is first used.

    Rate limits: (15-minute, daily) budgets for all requests and for reads, over windows of
    ``short_window``/``long_window`` seconds aligned to the epoch (so 900 s windows reset at
    :00, :15, :30, :45 and 86,400 s ones at midnight UTC). ``rate_limits_enabled=False``
    still counts and reports usage but never answers 429.
    """

    seed: int = 1
    athletes: int = 3
    activities: int = 300
    stream_step: int = 1
    history_end: dt.datetime = DEFAULT_HISTORY_END
    history_days: int = 730
    host: str = "127.0.0.1"
    port: int = 0
    client_id: int = 12345
    client_secret: str = "sim-client-secret"
    callback_domain: str | None = None
    access_token_ttl: int = 21600
    refresh_reuse_window: int = 3600
    refresh_policy: str = "immediate"
    code_ttl: int = 600
    max_connected_athletes: int | None = None
    overall_limits: tuple[int, int] = DEFAULT_OVERALL_LIMITS
    read_limits: tuple[int, int] = DEFAULT_READ_LIMITS
    short_window: float = 900.0
    long_window: float = 86400.0
    rate_limits_enabled: bool = True
    webhook_timeout: float = 2.0
    webhook_retries: int = 3
    webhook_retry_delay: float = 1.0
    max_hang_seconds: float = 300.0
    stream_cache_size: int = 64

    def __post_init__(self) -> None:
        if self.athletes < 1 or self.activities < 0:
            raise ValueError("athletes must be >= 1 and activities >= 0")
        if self.stream_step < 1:
            raise ValueError("stream_step must be >= 1 second")
        if self.refresh_policy not in ("until_used", "immediate"):
            raise ValueError("refresh_policy is 'until_used' or 'immediate'")
        if self.short_window <= 0 or self.long_window <= 0:
            raise ValueError("rate-limit windows must be positive")
        if self.history_end.tzinfo is None:
            raise ValueError("history_end must be timezone-aware")

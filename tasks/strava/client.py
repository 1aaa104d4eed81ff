"""A synchronous Strava API client for Huey tasks (threads).

Every API call: circuit check, budget reservation, the request, then the budget settled from
the response's rate-limit headers and the circuit told how it went. Timeouts, connection
errors and 5xx are retried with exponential backoff and full jitter, up to ``max_attempts``;
a body that is not JSON is retried ``malformed_attempts`` times in all. OAuth calls are not
budgeted (Strava does not count them) but go through the circuit; POSTs that exchange or
rotate tokens are retried only when the request surely never arrived (connect errors, 503).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from core.settings import Settings
from tasks.consumer import between_steps
from tasks.strava.budget import Budget
from tasks.strava.circuit import CircuitBreaker
from tasks.strava.errors import (
    CircuitOpen,
    NotFound,
    RateLimited,
    StravaError,
    Unauthorized,
    WaitUntil,
)

DEFAULT_STREAM_KEYS = (
    "time",
    "distance",
    "latlng",
    "altitude",
    "velocity_smooth",
    "heartrate",
    "cadence",
    "watts",
    "temp",
    "moving",
    "grade_smooth",
)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str  # always the newest: store it
    expires_at: int  # epoch seconds
    athlete: dict[str, Any] | None  # with a code exchange only
    raw: dict[str, Any] = field(repr=False)

    @property
    def athlete_id(self) -> int | None:
        return int(self.athlete["id"]) if self.athlete else None


@dataclass(frozen=True)
class Athlete:
    id: int
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Activity:
    id: int
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Streams:
    """Streams by type (``{"time": {"data": [...], ...}, ...}``); empty for manual activities."""

    by_type: dict[str, dict[str, Any]] = field(repr=False)

    def data(self, key: str) -> list[Any] | None:
        stream = self.by_type.get(key)
        return None if stream is None else list(stream.get("data", []))


def parse_tokens(body: Any) -> Tokens:
    """Tokens from Strava's token response (an exchange's or a refresh's)."""
    try:
        return Tokens(
            access_token=str(body["access_token"]),
            refresh_token=str(body.get("refresh_token") or ""),
            expires_at=int(body["expires_at"]),
            athlete=body.get("athlete"),
            raw=body,
        )
    except (KeyError, TypeError, ValueError):
        raise StravaError("Strava's token response lacks tokens", body=body) from None


class _Retry(Exception):
    def __init__(self, reason: str, failure: bool) -> None:
        super().__init__(reason)
        self.failure = failure  # counts against the circuit


class StravaClient:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        api_url: str = "https://www.strava.com/api/v3",
        oauth_url: str = "https://www.strava.com/oauth",
        budget: Budget | None = None,
        circuit: CircuitBreaker | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
        malformed_attempts: int = 2,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.api_url = api_url.rstrip("/")
        self.oauth_url = oauth_url.rstrip("/")
        self.budget = budget or Budget(client_id)
        self.circuit = circuit or CircuitBreaker(client_id)
        self.max_attempts = max_attempts
        self.malformed_attempts = malformed_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.rng = rng or random.Random()
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, redis_client: redis.Redis | None = None, **options: Any
    ) -> StravaClient:
        if settings.strava_client_id is None or settings.strava_client_secret is None:
            raise StravaError("Strava is not configured (STRIDE_STRAVA_CLIENT_ID/_SECRET)")
        app = str(settings.strava_client_id)
        prefix = settings.redis_key_prefix
        return cls(
            client_id=app,
            client_secret=settings.strava_client_secret.get_secret_value(),
            api_url=settings.strava_api_url,
            oauth_url=settings.strava_oauth_url,
            budget=Budget(
                app,
                redis_client=redis_client,
                key_prefix=prefix,
                windows=(settings.strava_short_window_seconds, settings.strava_long_window_seconds),
            ),
            circuit=CircuitBreaker(
                app,
                redis_client=redis_client,
                key_prefix=prefix,
                threshold=settings.strava_circuit_threshold,
                cooldown=settings.strava_circuit_cooldown_seconds,
            ),
            connect_timeout=settings.strava_connect_timeout_seconds,
            read_timeout=settings.strava_read_timeout_seconds,
            max_attempts=settings.strava_max_attempts,
            **options,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> StravaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- OAuth ---------------------------------------------------------------------------------

    def exchange_code(self, code: str) -> Tokens:
        """Trade an authorization code (pasted, or from the callback) for tokens and athlete."""
        return parse_tokens(
            self._oauth("token", {"code": code, "grant_type": "authorization_code"})
        )

    def refresh(self, refresh_token: str) -> Tokens:
        """New tokens; ``refresh_token`` of the result is the one to keep (it may rotate)."""
        body = self._oauth("token", {"refresh_token": refresh_token, "grant_type": "refresh_token"})
        tokens = parse_tokens(body)
        if not tokens.refresh_token:  # not rotated: the old one stays valid
            return Tokens(tokens.access_token, refresh_token, tokens.expires_at, None, body)
        return tokens

    def deauthorize(self, access_token: str) -> None:
        self._oauth("deauthorize", {"access_token": access_token}, credentials=False)

    def _oauth(self, path: str, form: dict[str, str], credentials: bool = True) -> Any:
        if credentials:
            form = {"client_id": self.client_id, "client_secret": self._client_secret, **form}
        return self._call("POST", f"{self.oauth_url}/{path}", data=form, budgeted=False)

    # -- API -----------------------------------------------------------------------------------

    def get_athlete(self, access_token: str) -> Athlete:
        body = self._api(access_token, "/athlete")
        return Athlete(int(body["id"]), body)

    def list_activities(
        self,
        access_token: str,
        *,
        after: int | None = None,
        before: int | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> list[Activity]:
        params: dict[str, int] = {"page": page, "per_page": per_page}
        if after is not None:
            params["after"] = after
        if before is not None:
            params["before"] = before
        body = self._api(access_token, "/athlete/activities", params)
        if not isinstance(body, list):
            raise StravaError("Strava's activity list is not a list", body=body)
        return [Activity(int(item["id"]), item) for item in body]

    def get_activity(self, access_token: str, activity_id: int) -> Activity:
        body = self._api(access_token, f"/activities/{activity_id}")
        return Activity(int(body["id"]), body)

    def get_streams(
        self, access_token: str, activity_id: int, keys: Sequence[str] = DEFAULT_STREAM_KEYS
    ) -> Streams:
        """Streams keyed by type; a 404 (manual activities have none) gives empty streams."""
        params = {"keys": ",".join(keys), "key_by_type": "true"}
        try:
            body = self._api(access_token, f"/activities/{activity_id}/streams", params)
        except NotFound:
            return Streams({})
        if not isinstance(body, dict):
            raise StravaError("Strava's streams are not keyed by type", body=body)
        return Streams(body)

    def _api(self, access_token: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {access_token}"}
        return self._call("GET", self.api_url + path, params=params, headers=headers)

    # -- one call, with retries ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        budgeted: bool = True,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        idempotent = method == "GET" or url.endswith("/deauthorize")
        malformed = 0
        last: str = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(method, url, budgeted, idempotent, params, data, headers)
            except _Retry as retry:
                last = str(retry)
                if retry.failure:
                    self.circuit.failure()
                if last.startswith("malformed"):
                    malformed += 1
                    if malformed >= self.malformed_attempts:
                        raise StravaError(f"Strava answered {url} with {last}") from None
            if attempt < self.max_attempts:
                between_steps()  # a cancelled job stops here rather than retry
                self.sleep(self._backoff(attempt))
        raise StravaError(f"Strava call {method} {url} failed {self.max_attempts} times: {last}")

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and the capped exponential delay."""
        return self.rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))

    def _attempt(
        self,
        method: str,
        url: str,
        budgeted: bool,
        idempotent: bool,
        params: Mapping[str, Any] | None,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> Any:
        # The budget first: a call the budget refuses must not take (and then hold, until
        # it times out) the half-open circuit's single trial.
        if budgeted:
            self.budget.reserve(read=True)
        try:
            self.circuit.before_call()
        except CircuitOpen:
            if budgeted:
                self.budget.release(counted=False)
            raise
        try:
            response = self.http.request(method, url, params=params, data=data, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if budgeted:
                self.budget.release(counted=False)
            raise _Retry(f"connection failed: {exc!r}", failure=True) from None
        except httpx.TransportError as exc:  # read timeouts, dropped connections
            if budgeted:
                self.budget.release(counted=True)
            if not idempotent:
                self.circuit.failure()
                raise StravaError(f"no answer from Strava to {method} {url}: {exc!r}") from None
            raise _Retry(f"no answer: {exc!r}", failure=True) from None
        if budgeted:
            self.budget.record(response.headers)
        return self._interpret(response, method, url, idempotent)

    def _interpret(self, response: httpx.Response, method: str, url: str, idempotent: bool) -> Any:
        status = response.status_code
        if status >= 500:
            if idempotent or status == 503:
                raise _Retry(f"HTTP {status}", failure=True)
            self.circuit.failure()
            raise StravaError(f"Strava answered {method} {url} with {status}", status=status)
        self.circuit.success()
        if status == 429:
            resume_at = self.budget.snapshot().exhausted_until or time.time() + 60
            raise RateLimited(
                f"Strava rate limit exceeded; resumes at {resume_at:.0f}",
                resume_at,
                status=429,
                body=_body_or_text(response),
            )
        if status >= 400:
            body = _body_or_text(response)
            kind = {401: Unauthorized, 404: NotFound}.get(status, StravaError)
            raise kind(f"Strava answered {method} {url} with {status}", status=status, body=body)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retry("malformed JSON", failure=False) from None


def _body_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:500]


__all__ = ["Activity", "Athlete", "StravaClient", "Streams", "Tokens", "WaitUntil", "parse_tokens"]

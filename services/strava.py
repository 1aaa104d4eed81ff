"""SyncService's use-cases: the Strava connection, authorization, and starting the jobs
that connect, disconnect and sync. Nothing here calls Strava: every external call is a job's
(see tasks/strava/), so these answer in milliseconds whatever Strava is doing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import structlog

from core.settings import Settings
from domain import names
from domain.connections import (
    ACTIVITY_SCOPES,
    RESOURCE,
    ConnectionState,
    ConnectionView,
    StravaDisconnecting,
    StravaNotConfigured,
    StravaNotConnected,
    StravaScopeMissing,
    SyncAlreadyActive,
    parse_scopes,
)
from domain.errors import InvalidArgument, NotFound, PermissionDenied, Violations
from domain.jobs import Job, JobKind, JobState
from services.jobs import JobLauncher, JobStore
from storage.database import Database
from storage.repositories.athletes import AthleteRepository
from storage.repositories.strava import StravaConnectionRepository

log = structlog.get_logger(__name__)

SCOPES = "read,activity:read_all"
# Webhook events: how many may wait per athlete, how old (or early) one may be, what of
# `updates` is kept.
WEBHOOK_BACKLOG = 20
EVENT_MAX_AGE = dt.timedelta(days=1)
EVENT_MAX_SKEW = dt.timedelta(minutes=10)
WEBHOOK_UPDATE_KEYS = ("title", "type", "private", "authorized")
STATE_LIFETIME = dt.timedelta(hours=1)
CONNECTION_KINDS = (JobKind.STRAVA_CONNECT, JobKind.STRAVA_DISCONNECT)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Sealer(Protocol):
    """Encrypts a secret for storage (the Strava token cipher)."""

    def encrypt(self, token: str) -> bytes: ...


class StravaService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        jobs: JobStore,
        launch: JobLauncher,
        cipher: Sealer | None,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.settings = settings
        self.db = db
        self.jobs = jobs
        self.launch = launch
        self.cipher = cipher
        self.clock = clock

    # Reading ------------------------------------------------------------------------------

    def connection(self, athlete_id: str) -> ConnectionView:
        """The stored link in the state its jobs give it: CONNECTING while a connect job
        runs, DISCONNECTING while a disconnect does."""
        with self.db.read_primary() as session:
            if AthleteRepository(session).get(athlete_id) is None:
                raise NotFound(RESOURCE, f"{names.athlete_name(athlete_id)}/stravaConnection")
            stored = StravaConnectionRepository(session).get(athlete_id)
        active = self.jobs.active(athlete_id, CONNECTION_KINDS)
        if active is not None and active.kind == JobKind.STRAVA_DISCONNECT:
            state = ConnectionState.DISCONNECTING
        elif active is not None:
            state = ConnectionState.CONNECTING
        elif stored is not None:
            state = stored.state
        else:
            state = ConnectionState.NOT_CONNECTED
        return ConnectionView(athlete_id, state, stored)

    # Authorizing and connecting -----------------------------------------------------------

    def authorization_url(self, athlete_id: str, redirect_uri: str) -> tuple[str, str]:
        """Strava's consent page for this athlete, and the state it carries."""
        self._configured()
        self.connection(athlete_id)  # NotFound for an unknown athlete
        redirect = redirect_uri or self.settings.strava_redirect_uri
        if urlsplit(redirect).scheme not in ("http", "https"):
            raise InvalidArgument.one("redirect_uri", "must be an http(s) URL")
        state = self._issue_state(athlete_id)
        query = urlencode(
            {
                "client_id": self.settings.strava_client_id,
                "redirect_uri": redirect,
                "response_type": "code",
                "approval_prompt": "auto",
                "scope": SCOPES,
                "state": state,
            }
        )
        return f"{self.settings.strava_oauth_url}/authorize?{query}", state

    def connect(self, athlete_id: str, code: str, scope: str, state: str, request_id: str) -> Job:
        """Enqueue the code's exchange (a STRAVA_CONNECT job). `code` may be the whole
        address Strava redirected to."""
        self._configured()
        code, scope, state = _from_redirect(code, scope, state)
        violations = Violations()
        if not code or len(code) > 200 or not code.isascii() or not code.isalnum():
            violations.add("code", "must be the authorization code (letters and digits)")
        if scope and len(scope) > 200:
            violations.add("scope", "must be at most 200 characters")
        violations.raise_if_any()
        if state and not self._state_valid(athlete_id, state):
            raise InvalidArgument.one(
                "state", "was not issued by GetStravaAuthorizationUrl for this athlete",
                reason="STRAVA_STATE_MISMATCH",
            )  # fmt: skip
        if self.connection(athlete_id).state == ConnectionState.DISCONNECTING:
            raise StravaDisconnecting(athlete_id)  # it would revoke the new tokens
        assert self.cipher is not None  # settings require a key with Strava configured
        params = {
            "code": self.cipher.encrypt(code).decode(),
            "scope": ",".join(parse_scopes(scope)),
        }
        return self._start(athlete_id, JobKind.STRAVA_CONNECT, params, request_id)[0]

    def disconnect(self, athlete_id: str, request_id: str) -> Job:
        """Enqueue the disconnect (STRAVA_DISCONNECT): deauthorize, delete Strava's data."""
        self._configured()
        view = self.connection(athlete_id)
        if view.stored is None and view.state != ConnectionState.DISCONNECTING:
            raise StravaNotConnected(athlete_id, view.state)
        return self._start(
            athlete_id,
            JobKind.STRAVA_DISCONNECT,
            {},
            request_id,
            exclusive=(JobKind.STRAVA_DISCONNECT,),
        )[0]

    # Syncing ------------------------------------------------------------------------------

    def start_sync(
        self,
        athlete_id: str,
        after: dt.datetime | None,
        full: bool,
        request_id: str,
        *,
        scheduled: bool = False,
    ) -> Job:
        """One sync per athlete: an incremental request joins the active one; a `full` or
        `after` request while one is active is SyncAlreadyActive."""
        if after is not None and full:
            raise InvalidArgument.one("after", "must not be given with full")
        self._configured()
        view = self.connection(athlete_id)
        if view.state != ConnectionState.CONNECTED or view.stored is None:
            raise StravaNotConnected(athlete_id, view.state)
        if not ACTIVITY_SCOPES & set(view.stored.granted_scopes):
            raise StravaScopeMissing(athlete_id)
        mode = "full" if full else "after" if after is not None else "incremental"
        params: dict[str, Any] = {
            "mode": mode,
            "after": None if after is None else int(after.timestamp()),
            "scheduled": scheduled,
        }
        job, created = self._start(
            athlete_id, JobKind.STRAVA_SYNC, params, request_id, exclusive=(JobKind.STRAVA_SYNC,)
        )
        # Not created: the active sync (even one of the same mode) or this request's retry.
        retry = bool(request_id) and job.request_id == request_id
        if mode != "incremental" and not created and not retry:
            raise SyncAlreadyActive(names.job_name(athlete_id, job.id))
        if not created and not scheduled and job.params.get("scheduled"):
            # A person now waits for a scheduled sync: its task goes ahead of scheduled work
            # (a second task for the job; whichever runs first claims it, the other returns).
            self.launch(job, urgent=True)
        return job

    # The webhook --------------------------------------------------------------------------

    def verify_webhook(self, mode: str, challenge: str, verify_token: str) -> bytes:
        """The JSON body echoing `challenge` when `verify_token` is the configured one."""
        expected = self.settings.strava_verify_token
        if (
            expected is None
            or mode != "subscribe"
            or not hmac.compare_digest(verify_token.encode(), expected.get_secret_value().encode())
        ):
            raise PermissionDenied("the webhook verify token does not match")
        return json.dumps({"hub.challenge": challenge}).encode()

    def accept_webhook_event(self, event: dict[str, Any]) -> Job | None:
        """A STRAVA_WEBHOOK job for a connected athlete's event; None when it is ignored.

        Anyone can post to the callback, so what an event may cost is bounded: only the
        fields Stride acts on are kept, a repeated delivery (Strava retries) is the same
        job, an event older than EVENT_MAX_AGE (or from the future) is dropped, and an
        athlete with WEBHOOK_BACKLOG events waiting gets no more (the next scheduled sync
        and reconcile catch up)."""
        if not self.settings.strava_enabled:
            return None
        subscription = self.settings.strava_subscription_id
        if subscription and event.get("subscription_id") != subscription:
            log.info("webhook event of another subscription ignored")
            return None
        clean = _webhook_event(event, self.clock())
        if clean is None:
            return None
        with self.db.read_primary() as session:
            stored = StravaConnectionRepository(session).by_strava_athlete(clean["owner_id"])
        if stored is None or stored.state != ConnectionState.CONNECTED:
            return None
        waiting = self.jobs.list_jobs(
            stored.athlete_id,
            states=(JobState.QUEUED, JobState.RUNNING, JobState.WAITING),
            kinds=(JobKind.STRAVA_WEBHOOK,),
            limit=WEBHOOK_BACKLOG,
        )
        if len(waiting) >= WEBHOOK_BACKLOG:
            log.warning("webhook event dropped: backlog full", athlete_id=stored.athlete_id)
            return None
        key = json.dumps([clean[k] for k in ("owner_id", "object_type", "object_id",
                                             "aspect_type", "event_time")])  # fmt: skip
        request_id = "webhook-" + hashlib.sha256(key.encode()).hexdigest()[:40]
        params = {"event": clean}
        return self._start(stored.athlete_id, JobKind.STRAVA_WEBHOOK, params, request_id)[0]

    # Helpers ------------------------------------------------------------------------------

    def _configured(self) -> None:
        if not self.settings.strava_enabled:
            raise StravaNotConfigured()

    def _start(
        self,
        athlete_id: str,
        kind: JobKind,
        params: dict[str, Any],
        request_id: str,
        *,
        exclusive: tuple[JobKind, ...] = (),
    ) -> tuple[Job, bool]:
        """The job, created and enqueued (True) or the one that already existed (False)."""
        job, created = self.jobs.create(
            athlete_id, kind, params, request_id or None, exclusive=exclusive
        )
        if created:
            # Should this enqueue be lost (the process dies now), the sweeper enqueues the
            # job again after its claim deadline.
            self.launch(job)
        return job, created

    def _issue_state(self, athlete_id: str) -> str:
        expires = int((self.clock() + STATE_LIFETIME).timestamp())
        body = f"{athlete_id}.{expires}.{secrets.token_hex(4)}"
        return f"{_b64(body.encode())}.{self._mac(body)}"

    def _state_valid(self, athlete_id: str, state: str) -> bool:
        try:
            encoded, mac = state.split(".", 1)
            body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            owner, expires, _ = body.split(".", 2)
            fresh = int(expires) >= self.clock().timestamp()
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(mac, self._mac(body)) and owner == athlete_id and fresh

    def _mac(self, body: str) -> str:
        digest = hmac.new(self.settings.signing_key, b"strava-state:" + body.encode(),
                          hashlib.sha256).digest()  # fmt: skip
        return _b64(digest[:16])


def _webhook_event(event: dict[str, Any], now: dt.datetime) -> dict[str, Any] | None:
    """The event as Stride keeps it, or None when there is nothing to act on."""
    kind, aspect = event.get("object_type"), event.get("aspect_type")
    object_id, owner_id = event.get("object_id"), event.get("owner_id")
    event_time = event.get("event_time")
    if not all(isinstance(v, int) and v > 0 for v in (object_id, owner_id, event_time)):
        return None
    assert isinstance(event_time, int)
    age = now.timestamp() - event_time
    if not -EVENT_MAX_SKEW.total_seconds() <= age <= EVENT_MAX_AGE.total_seconds():
        return None
    raw_updates = event.get("updates")
    updates = {
        key: str(value)[:200]
        for key, value in (raw_updates.items() if isinstance(raw_updates, dict) else ())
        if key in WEBHOOK_UPDATE_KEYS
    }
    if kind == "athlete" and updates.get("authorized", "").lower() != "false":
        return None  # only a deauthorization concerns Stride
    if kind not in ("activity", "athlete") or aspect not in ("create", "update", "delete"):
        return None
    return {
        "object_type": kind,
        "object_id": object_id,
        "aspect_type": aspect,
        "updates": updates,
        "owner_id": owner_id,
        "event_time": event_time,
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _from_redirect(code: str, scope: str, state: str) -> tuple[str, str, str]:
    """`code` as pasted: the code alone, or the address Strava redirected the browser to."""
    code = code.strip()
    if "?" not in code and "=" not in code:
        return code, scope, state
    query = parse_qs(urlsplit(code).query if "?" in code else code)

    def first(key: str, default: str) -> str:
        return query.get(key, [default])[0]

    return first("code", ""), scope or first("scope", ""), state or first("state", "")

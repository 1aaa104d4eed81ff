"""Strava's periodic work, once per slot across all workers: an incremental sync of every
connected athlete whose last sync is older than STRIDE_STRAVA_SYNC_INTERVAL_SECONDS, tokens
refreshed ahead of expiry, and a reconcile per athlete every
STRIDE_STRAVA_RECONCILE_INTERVAL_SECONDS. Each athlete's work is a job at SCHEDULED priority,
so what people start runs first."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import structlog

from domain.connections import REFRESH_AHEAD, ConnectionState
from domain.errors import StrideError
from domain.jobs import JobKind
from storage.repositories.strava import StravaConnectionRepository
from tasks.declare import periodic
from tasks.jobs import enqueue_job
from tasks.queue import current_queue
from tasks.strava.errors import StravaError

if TYPE_CHECKING:
    from runtime import Runtime

log = structlog.get_logger(__name__)

LOOK_EVERY = dt.timedelta(minutes=5)


def _runtime() -> Runtime | None:
    runtime: Runtime | None = current_queue().resources
    if runtime is None or not runtime.settings.strava_enabled:
        return None
    return runtime


def _connected(runtime: Runtime) -> list[str]:
    with runtime.database.read_primary() as session:
        return StravaConnectionRepository(session).athletes_in_state(ConnectionState.CONNECTED)


def scheduled_syncs(runtime: Runtime, now: dt.datetime) -> int:
    """Start (or join) an incremental sync for each athlete due one; how many were due."""
    interval = runtime.settings.strava_sync_interval_seconds
    if not interval:
        return 0
    due = 0
    for athlete_id in _connected(runtime):
        view = runtime.strava_service.connection(athlete_id)
        last = None if view.stored is None else view.stored.last_sync_time
        if last is not None and now - last < dt.timedelta(seconds=interval):
            continue
        try:
            runtime.strava_service.start_sync(athlete_id, None, False, "", scheduled=True)
            due += 1
        except StrideError as exc:  # disconnected meanwhile
            log.info("scheduled sync skipped", athlete_id=athlete_id, reason=exc.reason)
    return due


def scheduled_reconciles(runtime: Runtime, now: dt.datetime) -> int:
    interval = runtime.settings.strava_reconcile_interval_seconds
    if not interval:
        return 0
    due = 0
    for athlete_id in _connected(runtime):
        latest = runtime.job_store.list_jobs(athlete_id, kinds=[JobKind.STRAVA_RECONCILE], limit=1)
        if latest and now - latest[0].create_time < dt.timedelta(seconds=interval):
            continue
        job, created = runtime.job_store.create(
            athlete_id,
            JobKind.STRAVA_RECONCILE,
            {"scheduled": True},
            exclusive=(JobKind.STRAVA_RECONCILE, JobKind.STRAVA_DISCONNECT),
        )
        if created:
            enqueue_job(runtime.huey, job)
            due += 1
    return due


def refresh_expiring(runtime: Runtime, now: dt.datetime) -> int:
    """Refresh the tokens that expire within REFRESH_AHEAD plus one look, so a sync never
    starts with a token about to die. Failures are left to the next look (or the sync)."""
    tokens = runtime.strava_tokens
    if tokens is None:
        return 0
    with runtime.database.read_primary() as session:
        expiring = StravaConnectionRepository(session).expiring(now + REFRESH_AHEAD)
    refreshed = 0
    for athlete_id in expiring:
        try:
            tokens.refresh(tokens.load(athlete_id))
            refreshed += 1
        except (StravaError, StrideError, Exception) as exc:
            log.warning("strava token refresh failed", athlete_id=athlete_id, error=str(exc))
    return refreshed


@periodic(LOOK_EVERY)
def strava_housekeeping() -> dict[str, int]:
    runtime = _runtime()
    if runtime is None:
        return {}
    now = dt.datetime.now(dt.UTC)
    return {
        "refreshed": refresh_expiring(runtime, now),
        "syncs": scheduled_syncs(runtime, now),
        "reconciles": scheduled_reconciles(runtime, now),
    }

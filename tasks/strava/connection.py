"""Strava jobs that change the link itself: connecting (the code exchange, which must not
happen inside an RPC) and disconnecting (deauthorize, then delete what came from Strava, as
Strava's API agreement requires)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from domain.connections import ConnectionState, StravaConnection, parse_scopes
from domain.jobs import JobFailure, JobKind, JobState
from storage.repositories.strava import StravaConnectionRepository
from tasks.jobs import JobRun, register
from tasks.strava.errors import StravaError
from tasks.strava.tokens import AccessTokens
from tasks.strava.work import strava_work

log = structlog.get_logger(__name__)

# Jobs a disconnect cancels first (they would write activities it is about to delete).
STRAVA_WORK = (JobKind.STRAVA_SYNC, JobKind.STRAVA_WEBHOOK, JobKind.STRAVA_RECONCILE)


def run_connect(run: JobRun) -> dict[str, Any]:
    work = strava_work()
    athlete_id = run.job.athlete_id or ""
    cipher = work.tokens.cipher
    code = cipher.decrypt(str(run.job.params["code"]).encode())
    try:
        tokens = work.client.exchange_code(code)
    except StravaError as exc:
        if exc.status not in (400, 401, 403):
            raise  # transient: retried
        raise JobFailure(
            "INVALID_ARGUMENT",
            "STRAVA_CODE_REJECTED",
            "Strava rejected the authorization code (expired, already used, or for another"
            " application): open the authorization URL again",
        ) from None
    strava_athlete_id = tokens.athlete_id or work.client.get_athlete(tokens.access_token).id
    scopes = parse_scopes(str(run.job.params.get("scope") or ""))
    if not scopes:
        scopes = _probe_scopes(work.client, tokens.access_token)
    now = dt.datetime.now(dt.UTC)
    with work.runtime.database.transaction() as session:
        repo = StravaConnectionRepository(session)
        taken = repo.by_strava_athlete(strava_athlete_id)
        if taken is not None and taken.athlete_id != athlete_id:
            raise JobFailure(
                "FAILED_PRECONDITION",
                "STRAVA_ATHLETE_TAKEN",
                f"Strava athlete {strava_athlete_id} is connected to another Stride athlete",
            )
        previous = repo.get(athlete_id, lock=True)
        same = previous is not None and previous.strava_athlete_id == strava_athlete_id
        repo.save(
            StravaConnection(
                athlete_id=athlete_id,
                strava_athlete_id=strava_athlete_id,
                state=ConnectionState.CONNECTED,
                granted_scopes=scopes,
                access_token_encrypted=cipher.encrypt(tokens.access_token),
                refresh_token_encrypted=cipher.encrypt(tokens.refresh_token),
                access_token_expire_time=dt.datetime.fromtimestamp(tokens.expires_at, dt.UTC),
                connect_time=now,
                # Reconnecting the same Strava athlete keeps where syncs stopped.
                last_sync_time=previous.last_sync_time if same and previous else None,
                sync_cursor=previous.sync_cursor if same and previous else None,
            )
        )
    log.info("strava connected", athlete_id=athlete_id, strava_athlete_id=strava_athlete_id)
    return {}


def _probe_scopes(client: Any, access_token: str) -> tuple[str, ...]:
    """A code pasted alone does not say what was granted: listing activities tells whether
    `activity:read` was (private ones need `activity:read_all`, which a list cannot tell)."""
    try:
        client.list_activities(access_token, per_page=1)
    except StravaError as exc:
        if exc.status in (401, 403):
            return ("read",)
        raise
    return ("activity:read", "read")


def run_disconnect(run: JobRun) -> dict[str, Any]:
    work = strava_work()
    athlete_id = run.job.athlete_id or ""
    for job in work.jobs.list_jobs(
        athlete_id,
        states=[JobState.QUEUED, JobState.RUNNING, JobState.WAITING],
        kinds=STRAVA_WORK,
        limit=100,
    ):
        work.jobs.request_cancel(job.id)
    run.check()
    _deauthorize(work.tokens, athlete_id)
    deleted = work.activities.delete(athlete_id)
    with work.runtime.database.transaction() as session:
        StravaConnectionRepository(session).delete(athlete_id)
    log.info("strava disconnected", athlete_id=athlete_id, deleted=deleted)
    return {"deleted": deleted}


def _deauthorize(tokens: AccessTokens, athlete_id: str) -> None:
    """Tell Strava to forget Stride; already-revoked access is fine."""
    with tokens.db.read_primary() as session:
        stored = StravaConnectionRepository(session).get(athlete_id)
    if stored is None or stored.state != ConnectionState.CONNECTED:
        return
    try:
        tokens.call(athlete_id, tokens.client.deauthorize)
    except JobFailure:
        pass  # Strava refused the tokens: access is already gone
    except StravaError as exc:
        if exc.status not in (400, 401, 404):
            raise


__all__ = ["run_connect", "run_disconnect"]

register(JobKind.STRAVA_CONNECT, run_connect)
register(JobKind.STRAVA_DISCONNECT, run_disconnect)

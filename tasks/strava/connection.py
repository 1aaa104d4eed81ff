"""Strava jobs that change the link itself: connecting (the code exchange, which must not
happen inside an RPC) and disconnecting (deauthorize, then delete what came from Strava, as
Strava's API agreement requires)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import time
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError

from domain.connections import ConnectionState, StravaConnection, parse_scopes
from domain.errors import FailedPrecondition
from domain.jobs import JobFailure, JobKind, JobState, Progress, ResumeLater
from storage.repositories.strava import StravaConnectionRepository
from tasks.jobs import JobRun, register
from tasks.strava.client import StravaClient, Tokens, parse_tokens
from tasks.strava.errors import StravaError
from tasks.strava.work import StravaWork, strava_work

log = structlog.get_logger(__name__)

# Jobs a disconnect stops first (they would write activities it is about to delete).
STRAVA_WORK = (JobKind.STRAVA_SYNC, JobKind.STRAVA_WEBHOOK, JobKind.STRAVA_RECONCILE)
ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.WAITING)
# While those jobs stop, the disconnect looks again this often.
STOP_WAIT_SECONDS = 1.0


def _taken(strava_athlete_id: int) -> JobFailure:
    return JobFailure(
        "FAILED_PRECONDITION",
        "STRAVA_ATHLETE_TAKEN",
        f"Strava athlete {strava_athlete_id} is connected to another Stride athlete",
    )


def run_connect(run: JobRun) -> dict[str, Any]:
    work = strava_work()
    athlete_id = run.job.athlete_id or ""
    tokens = _exchange(work, run)
    strava_athlete_id = tokens.athlete_id or work.client.get_athlete(tokens.access_token).id
    scopes = parse_scopes(str(run.job.params.get("scope") or ""))
    if not scopes:
        scopes = _probe_scopes(work.client, tokens.access_token)
    cipher = work.tokens.cipher
    now = dt.datetime.now(dt.UTC)
    try:
        with work.runtime.database.transaction() as session:
            repo = StravaConnectionRepository(session)
            taken = repo.by_strava_athlete(strava_athlete_id)
            if taken is not None and taken.athlete_id != athlete_id:
                raise _taken(strava_athlete_id)
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
    except IntegrityError:  # another Stride athlete connected this Strava athlete meanwhile
        raise _taken(strava_athlete_id) from None
    log.info("strava connected", athlete_id=athlete_id, strava_athlete_id=strava_athlete_id)
    return {}


def _exchange(work: StravaWork, run: JobRun) -> Tokens:
    """The code's tokens. Codes are single-use: the tokens go into the job's checkpoint
    (encrypted) at once, so a retry after a later failure reuses them."""
    cipher = work.tokens.cipher
    saved = (run.job.checkpoint or {}).get("tokens")
    if isinstance(saved, str):
        return parse_tokens(json.loads(cipher.decrypt(saved.encode())))
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
    sealed = cipher.encrypt(json.dumps(tokens.raw)).decode()
    run.progress(Progress(), checkpoint={"tokens": sealed})
    return tokens


def _probe_scopes(client: StravaClient, access_token: str) -> tuple[str, ...]:
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
    """Mark the connection DISCONNECTING (so no job uses it and no webhook event is taken),
    stop the athlete's other Strava jobs and wait until they have, then deauthorize and
    delete: nothing a running sync writes can outlive the disconnect."""
    work = strava_work()
    athlete_id = run.job.athlete_id or ""
    stored = _mark_disconnecting(work, athlete_id)
    for job in work.jobs.list_jobs(athlete_id, states=ACTIVE, kinds=STRAVA_WORK, limit=100):
        with contextlib.suppress(FailedPrecondition):  # it ended meanwhile
            work.jobs.request_cancel(job.id)
    if work.jobs.list_jobs(athlete_id, states=ACTIVE, kinds=STRAVA_WORK, limit=1):
        raise ResumeLater("waiting for the athlete's Strava jobs to stop",
                          time.time() + STOP_WAIT_SECONDS)  # fmt: skip
    run.check()
    if stored is not None:
        _deauthorize(work, stored)
    deleted = work.activities.delete(athlete_id)
    with work.runtime.database.transaction() as session:
        StravaConnectionRepository(session).delete(athlete_id)
    log.info("strava disconnected", athlete_id=athlete_id, deleted=deleted)
    return {"deleted": deleted}


def _mark_disconnecting(work: StravaWork, athlete_id: str) -> StravaConnection | None:
    with work.runtime.database.transaction() as session:
        repo = StravaConnectionRepository(session)
        stored = repo.get(athlete_id, lock=True)
        if stored is not None and stored.state != ConnectionState.DISCONNECTING:
            repo.save(dataclasses.replace(stored, state=ConnectionState.DISCONNECTING))
    return stored


def _deauthorize(work: StravaWork, stored: StravaConnection) -> None:
    """Tell Strava to forget Stride; access already gone (revoked, expired for good) is
    fine."""
    if stored.state == ConnectionState.REVOKED:
        return
    cipher = work.tokens.cipher
    token = cipher.decrypt(stored.access_token_encrypted)
    try:
        if stored.needs_refresh(dt.datetime.now(dt.UTC)):
            token = work.client.refresh(cipher.decrypt(stored.refresh_token_encrypted)).access_token
        work.client.deauthorize(token)
    except StravaError as exc:
        if exc.status not in (400, 401, 404):
            raise


__all__ = ["run_connect", "run_disconnect"]

register(JobKind.STRAVA_CONNECT, run_connect)
register(JobKind.STRAVA_DISCONNECT, run_disconnect)

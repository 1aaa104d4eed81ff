"""Strava jobs that write activities: the sync (paged by time, resumable, paced by the
shared budget), a webhook event, and the reconcile that finds deletions webhooks missed.

A sync lists the athlete's activities oldest first after a start time. For each activity it
compares the summary with the stored copy: unchanged ones cost no further call; new or
edited ones are fetched in detail with their streams and written with their samples in one
unit of work, keyed by (athlete, strava, activity id), so a re-run writes nothing twice.

It pages by time, not by page number (deleting an activity on Strava between two requests
would shift every later one a place and one would never be listed): each request asks for
the activities after a start second, and the next one starts a second before the newest
start on the page, remembering the ids already done that started in that last second. A
full page whose activities all started in one second is the exception: the next request
asks for the following page of that second. After each written activity (and each page) the
job stores a checkpoint (the start second, the ids done since, the tallies) with its
progress and its result so far: a worker that dies, a spent budget (the job WAITs until the
window resets) or a stopping worker all resume there, skipping what was done.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from domain.connections import incremental_start
from domain.jobs import JobFailure, JobKind, Progress
from domain.strava import StravaPayloadError, activity_from_strava, samples_from_streams
from storage.repositories.strava import StravaConnectionRepository
from tasks.jobs import JobRun, register
from tasks.strava.client import Activity as StravaActivityRecord
from tasks.strava.errors import NotFound
from tasks.strava.work import StravaWork, strava_work
from tasks.tally import Tally as BaseTally

log = structlog.get_logger(__name__)

# Summary fields whose change means the stored copy is stale (kudos and the like are not).
FINGERPRINT = (
    "name",
    "sport_type",
    "type",
    "start_date",
    "elapsed_time",
    "moving_time",
    "distance",
    "total_elevation_gain",
    "visibility",
    "private",
    "average_heartrate",
    "max_heartrate",
    "manual",
)
# Reconcile refuses to delete more than this share of the stored activities at once: Strava
# answering with an empty or truncated history is likelier than the athlete deleting most of it.
RECONCILE_MAX_SHARE = 0.5


def fingerprint(raw: dict[str, Any] | None) -> tuple[Any, ...] | None:
    return None if raw is None else tuple(raw.get(key) for key in FINGERPRINT)


class Tally(BaseTally):
    """What a Strava job did (the job's result), kept in its checkpoint across re-runs."""

    def progress(self) -> Progress:
        done = self.created + self.updated + self.unchanged + self.deleted
        return Progress(completed=done, failed=self.failed, skipped=self.skipped)


def write_activity(
    work: StravaWork,
    run: JobRun,
    athlete_id: str,
    activity_id: int,
    tally: Tally,
    *,
    with_streams: bool = True,
    detail: StravaActivityRecord | None = None,
) -> str:
    """Fetch one activity in detail (unless given) and its streams, and store it; returns
    its title for the job's event. A vanished activity is skipped, a malformed one fails
    alone."""
    if detail is None:
        try:
            detail = work.tokens.call(
                athlete_id, lambda t: work.client.get_activity(t, activity_id)
            )
        except NotFound:
            tally.skipped += 1  # deleted meanwhile, or no longer visible to this token
            return str(activity_id)
    try:
        mapped = activity_from_strava(detail.raw)
    except StravaPayloadError as exc:
        tally.fail(str(activity_id), str(exc))
        return str(activity_id)
    samples = None
    if with_streams:
        run.check(tally.to_json())
        streams = work.tokens.call(athlete_id, lambda t: work.client.get_streams(t, activity_id))
        samples = samples_from_streams(mapped.measurements.start_time, streams.by_type)
    _, created, written = work.activities.write(
        athlete_id,
        mapped.external_id,
        mapped.edit,
        mapped.measurements,
        detail.raw,
        samples,
        run.job.id,
    )
    if created:
        tally.created += 1
    else:
        tally.updated += 1
    tally.samples_written += written
    return mapped.edit.title


def _start_after(work: StravaWork, run: JobRun) -> int:
    """Epoch seconds the listing starts after, from the job's parameters."""
    params = run.job.params
    if params.get("mode") == "full":
        return 0
    if params.get("after") is not None:
        return max(0, int(params["after"]) - 1)  # Strava's `after` is exclusive
    stored = work.tokens.load(run.job.athlete_id or "")
    start = incremental_start(stored.sync_cursor)
    return 0 if start is None else int(start.timestamp())


def _start_epoch(summary: StravaActivityRecord) -> int | None:
    """The activity's start as epoch seconds (what Strava's `after` compares), if known."""
    start = summary.raw.get("start_date")
    if not isinstance(start, str):
        return None
    try:
        return int(dt.datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


@dataclass
class _Window:
    """Where a sync is: the listing starts after `after` (exclusive epoch seconds), at
    `page` (1 unless more than a full page started in the second after `after`); `done`
    holds the ids in that listing already synced (a re-run skips them)."""

    after: int
    page: int = 1
    done: set[str] = field(default_factory=set)

    def checkpoint(self, newest: str | None, tally: Tally) -> dict[str, Any]:
        return {
            "after": self.after,
            "page": self.page,
            "done_ids": sorted(self.done),
            "newest": newest,
        } | _tally(tally)

    def advance(self, listing: list[StravaActivityRecord]) -> None:
        """Past a full page (every activity on it done): the next request starts a second
        before the newest start on it; the ids that started in that second are remembered
        (neither skipped nor synced twice). When the page cannot move the start (all of it
        started in the second after `after`, or no start is known), the next page of the
        same listing: never the same request twice."""
        starts = [s for s in (_start_epoch(a) for a in listing) if s is not None]
        after = max(starts) - 1 if starts else self.after
        if after > self.after:
            self.after, self.page = after, 1
        else:
            self.page += 1
        # Only ids that can be listed again are kept (at most a page of them).
        self.done = {str(a.id) for a in listing if _later(_start_epoch(a), self.after)}


def _later(start: int | None, after: int) -> bool:
    """Whether an activity starting at `start` is listed after `after` (unknown: it may be)."""
    return start is None or start > after


def _resume(work: StravaWork, run: JobRun, checkpoint: dict[str, Any]) -> _Window:
    if not checkpoint:
        return _Window(_start_after(work, run))
    window = _Window(int(checkpoint["after"]), int(checkpoint.get("page", 1)))
    window.done = {str(i) for i in checkpoint.get("done_ids") or ()}
    return window


def _list(work: StravaWork, athlete_id: str, window: _Window) -> list[StravaActivityRecord]:
    """One page of the athlete's activities after the window's start, oldest first."""
    return work.tokens.call(
        athlete_id,
        partial(
            work.client.list_activities,
            after=window.after,
            page=window.page,
            per_page=work.page_size,
        ),
    )


def run_sync(run: JobRun) -> dict[str, Any]:
    work = strava_work()
    athlete_id = run.job.athlete_id or ""
    checkpoint = run.job.checkpoint or {}
    window = _resume(work, run, checkpoint)
    # A checkpoint from before paging by time counts the page's items done by position.
    skip_first = int(checkpoint.get("done", 0)) if "done_ids" not in checkpoint else 0
    newest: str | None = checkpoint.get("newest")
    tally = Tally.from_json(checkpoint.get("tally"))
    while True:
        run.check(tally.to_json())
        listing = _list(work, athlete_id, window)
        stored = work.activities.stored_raw(athlete_id, [str(a.id) for a in listing])
        # A re-run skips what its last checkpoint covered: its progress never goes back.
        for index, summary in enumerate(listing):
            key = str(summary.id)
            if key in window.done or index < skip_first:
                window.done.add(key)
                continue
            run.check(tally.to_json())
            start = summary.raw.get("start_date")
            if isinstance(start, str) and (newest is None or start > newest):
                newest = start
            title = _sync_one(work, run, athlete_id, summary, stored, tally)
            window.done.add(key)
            if title is not None:  # written (or failed): the event carries the checkpoint
                run.progress(
                    tally.progress(),
                    item=title,
                    checkpoint=window.checkpoint(newest, tally),
                    result=tally.to_json(),
                )
        skip_first = 0
        full = len(listing) >= work.page_size
        if full:
            window.advance(listing)
        run.progress(
            tally.progress(), checkpoint=window.checkpoint(newest, tally), result=tally.to_json()
        )
        if not full:
            break
    _finish(work, athlete_id, newest)
    return tally.to_json()


def _tally(tally: Tally) -> dict[str, Any]:
    return {"tally": tally.to_json()}


def _sync_one(
    work: StravaWork,
    run: JobRun,
    athlete_id: str,
    summary: StravaActivityRecord,
    stored: dict[str, Any],
    tally: Tally,
) -> str | None:
    """Sync one listed activity; its title when something was written or failed (an event),
    None when it was unchanged."""
    key = str(summary.id)
    if key in stored and fingerprint(stored[key]) == fingerprint(summary.raw):
        tally.unchanged += 1
        return None
    with_streams = not summary.raw.get("manual", False)
    return write_activity(work, run, athlete_id, summary.id, tally, with_streams=with_streams)


def _finish(work: StravaWork, athlete_id: str, newest: str | None) -> None:
    """The connection remembers the sync: when it ended and the newest start time seen."""
    cursor = None
    if newest is not None:
        try:
            cursor = dt.datetime.fromisoformat(newest.replace("Z", "+00:00"))
        except ValueError:
            cursor = None
    with work.runtime.database.transaction() as session:
        repo = StravaConnectionRepository(session)
        stored = repo.get(athlete_id, lock=True)
        if stored is None:
            return
        if cursor is not None and stored.sync_cursor is not None:
            cursor = max(cursor, stored.sync_cursor)
        repo.save(
            dataclasses.replace(
                stored,
                last_sync_time=dt.datetime.now(dt.UTC),
                sync_cursor=cursor or stored.sync_cursor,
            )
        )


def run_webhook(run: JobRun) -> dict[str, Any]:
    """Act on one push event. Events are unsigned (anyone can post to the callback), so
    each is checked with Strava before anything is deleted: an activity only once Strava
    answers 404 for it, an athlete's data only once Strava refuses their tokens."""
    work = strava_work()
    athlete_id = run.job.athlete_id or ""
    event = run.job.params.get("event") or {}
    tally = Tally()
    kind = event.get("object_type")
    object_id = int(event.get("object_id") or 0)
    if kind == "athlete":
        try:
            work.tokens.call(athlete_id, work.client.get_athlete)
        except JobFailure as failure:
            if failure.reason != "STRAVA_ACCESS_REVOKED":
                raise
            tally.deleted = work.activities.delete(athlete_id)
        return tally.to_json()
    if kind != "activity" or object_id <= 0:
        return tally.to_json()
    stored = work.activities.stored_raw(athlete_id, [str(object_id)])
    try:
        detail = work.tokens.call(athlete_id, lambda t: work.client.get_activity(t, object_id))
    except NotFound:
        if stored:
            tally.deleted = work.activities.delete(athlete_id, [str(object_id)])
        return tally.to_json()
    if not _owned_by(work, athlete_id, object_id, detail):
        # Strava answers with others' public activities too: a forged event naming one
        # must not store it as this athlete's.
        log.warning("webhook event names an activity of another athlete: skipped",
                    athlete_id=athlete_id, activity_id=object_id)  # fmt: skip
        tally.skipped += 1
        return tally.to_json()
    # It exists: create it, or (an edit of title, type, privacy) update it without fetching
    # the recording again.
    with_streams = str(object_id) not in stored
    title = write_activity(
        work, run, athlete_id, object_id, tally, with_streams=with_streams, detail=detail
    )
    run.progress(tally.progress(), item=title, result=tally.to_json())
    return tally.to_json()


def _owned_by(
    work: StravaWork, athlete_id: str, object_id: int, detail: StravaActivityRecord
) -> bool:
    """Whether Strava's answer is the activity the event named, of the connected athlete."""
    owner = detail.raw.get("athlete")
    owner_id = owner.get("id") if isinstance(owner, dict) else None
    expected = work.tokens.load(athlete_id).strava_athlete_id
    try:
        return detail.id == object_id and owner_id is not None and int(owner_id) == expected
    except (TypeError, ValueError):
        return False


def run_reconcile(run: JobRun) -> dict[str, Any]:
    """Delete stored activities Strava no longer lists (deletions whose webhook was lost),
    unless that would delete most of them (then Strava has likely lost data: refuse)."""
    work = strava_work()
    athlete_id = run.job.athlete_id or ""
    # What is stored before Strava is listed: an activity a sync or a webhook stores while
    # the listing runs is not among them (nor listed), so it is never taken for a deletion.
    stored = work.activities.stored_ids(athlete_id)
    listed: set[str] = set()
    window = _Window(0)  # by time, as the sync: a deletion meanwhile hides no other activity
    while True:
        run.check()
        listing = _list(work, athlete_id, window)
        listed.update(str(a.id) for a in listing)
        if len(listing) < work.page_size:
            break
        window.advance(listing)
    missing = sorted(stored - listed)
    tally = Tally(unchanged=len(stored) - len(missing))
    if missing and (not listed or len(missing) > RECONCILE_MAX_SHARE * len(stored)):
        raise JobFailure(
            "FAILED_PRECONDITION",
            "STRAVA_HISTORY_MISSING",
            f"Strava lists {len(listed)} activities but {len(missing)} of the {len(stored)}"
            " stored are not among them: refusing to delete (Strava may have lost them)",
        )
    if missing:
        tally.deleted = work.activities.delete(athlete_id, missing)
    return tally.to_json()


register(JobKind.STRAVA_SYNC, run_sync)
register(JobKind.STRAVA_WEBHOOK, run_webhook)
register(JobKind.STRAVA_RECONCILE, run_reconcile)

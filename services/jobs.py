"""The job store tasks use (leases, state changes, checkpoints, progress, cancellation) and
`watch`, the replay-then-live merge WatchJob is built on.

Every state or progress change is one unit of work that updates the job and stores its
event with the next sequence; the event is published on the bus only after that commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy.exc import IntegrityError

from core.job_bus import BusUnavailable, JobEventBus, Subscription
from domain import names
from domain.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from domain.jobs import (
    RESOURCE,
    DeadLetter,
    EventsExpired,
    Job,
    JobEvent,
    JobKind,
    JobState,
    Progress,
    check_transition,
)
from services.paging import Paging
from storage.database import Database
from storage.models import JobRow
from storage.repositories.jobs import JobRepository, to_job

log = structlog.get_logger(__name__)

# A running task renews its lease every LEASE / 3; a worker that stops renewing (killed)
# loses the job LEASE after its last renewal, and the sweeper re-enqueues it.
LEASE = dt.timedelta(seconds=30)
RENEW_EVERY = LEASE / 3
# A QUEUED job not claimed by then is re-enqueued (its enqueue was lost); a duplicate run is
# harmless, since only one task can hold the lease.
CLAIM_DEADLINE = dt.timedelta(minutes=10)
# Events of a job are kept this long after it ends (its last event is kept for ever).
EVENT_RETENTION = dt.timedelta(days=7)
EVENT_PAGE = 500

DEAD_LETTER_RESOURCE = "stride.dev/DeadLetter"
_UNSET: Any = object()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseLost(FailedPrecondition):
    """Another worker holds the job now (this one stopped renewing in time): stop."""

    reason = "JOB_LEASE_LOST"


@dataclass(frozen=True)
class LeaseStatus:
    owned: bool
    cancel_requested: bool


class JobLauncher(Protocol):
    """Enqueues a job's task (the runtime's, over the task queue); `urgent` when a person
    now waits for a job created as scheduled work."""

    def __call__(self, job: Job, *, urgent: bool = False) -> None: ...


class JobStore:
    def __init__(
        self,
        db: Database,
        bus: JobEventBus | None = None,
        *,
        lease: dt.timedelta = LEASE,
        claim_deadline: dt.timedelta = CLAIM_DEADLINE,
        retention: dt.timedelta = EVENT_RETENTION,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.db = db
        self.bus = bus
        self.lease = lease
        self.claim_deadline = claim_deadline
        self.retention = retention
        self.clock = clock

    def _publish(self, event: JobEvent | None) -> None:
        if event is not None and self.bus is not None:
            self.bus.publish(event)

    @staticmethod
    def _not_found(job_id: str) -> NotFound:
        return NotFound(RESOURCE, f"jobs/{job_id}")

    # Creating and reading -----------------------------------------------------------------

    def create(
        self,
        athlete_id: str | None,
        kind: JobKind,
        params: dict[str, Any],
        request_id: str | None = None,
        *,
        exclusive: Collection[JobKind] = (),
    ) -> tuple[Job, bool]:
        """A QUEUED job (event 1), or the one this (athlete, request_id) already created;
        True when created now (the caller enqueues its task). `exclusive`: when the athlete
        has a job of one of these kinds that has not ended, that job is returned instead
        (one sync per athlete); checked and created atomically."""
        now = self.clock()
        try:
            with self.db.transaction() as session:
                repo = JobRepository(session)
                if request_id:
                    existing = repo.get_by_request_id(athlete_id, request_id)
                    if existing is not None:
                        return _same_request(existing, kind), False
                if exclusive and athlete_id is not None:
                    if not repo.lock_athlete(athlete_id):
                        raise NotFound("stride.dev/Athlete", names.athlete_name(athlete_id))
                    active = repo.active(athlete_id, exclusive)
                    if active is not None:
                        return active, False
                job, event = repo.add(
                    athlete_id,
                    kind,
                    params,
                    request_id=request_id,
                    claim_deadline=now + self.claim_deadline,
                    now=now,
                )
        except IntegrityError:
            if not request_id:
                raise
            with self.db.read_primary() as session:
                existing = JobRepository(session).get_by_request_id(athlete_id, request_id)
            if existing is None:
                raise
            return _same_request(existing, kind), False
        self._publish(event)
        return job, True

    def active(self, athlete_id: str, kinds: Collection[JobKind]) -> Job | None:
        with self.db.read_primary() as session:
            return JobRepository(session).active(athlete_id, kinds)

    def get(self, job_id: str) -> Job:
        with self.db.read_primary() as session:
            job = JobRepository(session).get(job_id)
        if job is None:
            raise self._not_found(job_id)
        return job

    def list_jobs(
        self,
        athlete_id: str | None,
        *,
        states: Collection[JobState] = (),
        kinds: Collection[JobKind] = (),
        after: tuple[dt.datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Job]:
        with self.db.read_only() as session:
            return JobRepository(session).list_jobs(
                athlete_id, states=states, kinds=kinds, after=after, limit=limit
            )

    def events_after(
        self, job_id: str, after_sequence: int, limit: int = EVENT_PAGE
    ) -> list[JobEvent]:
        with self.db.read_primary() as session:
            return JobRepository(session).events_after(job_id, after_sequence, limit)

    def oldest_sequence(self, job_id: str) -> int | None:
        with self.db.read_primary() as session:
            return JobRepository(session).oldest_sequence(job_id)

    # Running (tasks) ----------------------------------------------------------------------

    def start(self, job_id: str, owner: str, *, task_id: str | None = None) -> Job | None:
        """Claim the job's lease for `owner` and move it to RUNNING (event). None when there
        is nothing to run: it ended, another live worker holds it, or cancellation was
        requested (then it moves to CANCELLED here).

        `task_id`: the queue task running the job, the last part of `owner`. A lease still
        held by an earlier attempt of that task is taken over at once: the queue retries a
        task only after its attempt failed, and a failed attempt that could not give its
        lease up (the database was down) must not leave the job to the sweeper."""
        now = self.clock()
        event: JobEvent | None = None
        with self.db.transaction() as session:
            repo = JobRepository(session)
            row = repo.lock(job_id)
            if row is None:
                raise self._not_found(job_id)
            state = JobState(row.state)
            if state.terminal or not repo.claim(job_id, owner, now, self.lease, task_id):
                return None
            session.refresh(row)
            if row.cancel_requested:
                event = repo.append_event(row, state=JobState.CANCELLED, now=now)
                result = None
            else:
                if state != JobState.RUNNING:
                    event = repo.append_event(row, state=JobState.RUNNING, now=now)
                result = to_job(row)
        self._publish(event)
        return result

    def _change(
        self,
        job_id: str,
        owner: str | None,
        state: JobState | None,
        *,
        progress: Progress | None = None,
        item: str = "",
        item_error: str = "",
        item_reason: str = "",
        resume_time: dt.datetime | None = None,
        message: str = "",
        checkpoint: Any = _UNSET,
        result: Any = _UNSET,
        error: Any = _UNSET,
    ) -> JobEvent:
        now = self.clock()
        with self.db.transaction() as session:
            repo = JobRepository(session)
            row = repo.lock(job_id)
            if row is None:
                raise self._not_found(job_id)
            _check_owner(row, owner, now)
            current = JobState(row.state)
            target = current if state is None else state
            if target == JobState.SUCCEEDED and row.cancel_requested:
                # CancelJob answered `cancel_requested`: the job ends CANCELLED even when its
                # task finished before noticing (what it stored is kept either way).
                target = JobState.CANCELLED
            check_transition(job_id, current, target)
            if checkpoint is not _UNSET:
                row.checkpoint = checkpoint
            if result is not _UNSET:
                row.result = result
            if error is not _UNSET:
                row.error = error
            event = repo.append_event(
                row,
                state=target,
                progress=progress,
                item=item,
                item_error=item_error,
                item_reason=item_reason,
                resume_time=resume_time,
                message=message,
                now=now,
            )
            if target == JobState.WAITING and owner is not None and resume_time is not None:
                # The task scheduled for `resume_time` claims the job afresh (any worker may
                # run it); should that task be lost, the sweeper re-enqueues the job once
                # this deadline passes.
                row.lease_owner = None
                row.lease_expire_time = max(resume_time, now) + self.lease
        self._publish(event)
        return event

    def transition(
        self,
        job_id: str,
        state: JobState,
        *,
        owner: str | None = None,
        progress: Progress | None = None,
        message: str = "",
        resume_time: dt.datetime | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        checkpoint: Any = _UNSET,
    ) -> JobEvent:
        """Move the job to `state` with an event. `owner` (a task) must still hold the lease
        (LeaseLost otherwise); FailedPrecondition (IllegalTransition) for a move the state
        machine forbids, e.g. from an ended job."""
        return self._change(
            job_id,
            owner,
            state,
            progress=progress,
            message=message,
            resume_time=resume_time,
            checkpoint=checkpoint,
            result=_UNSET if result is None else result,
            error=_UNSET if error is None else error,
        )

    def record_progress(
        self,
        job_id: str,
        owner: str | None,
        progress: Progress,
        *,
        checkpoint: Any = _UNSET,
        result: Any = _UNSET,
        item: str = "",
        item_error: str = "",
        item_reason: str = "",
    ) -> JobEvent:
        """Progress (and optionally the checkpoint a re-run resumes from, and `result`, what
        the job has produced so far: Job.result while it runs), atomically with its event."""
        return self._change(
            job_id,
            owner,
            None,
            progress=progress,
            checkpoint=checkpoint,
            result=result,
            item=item,
            item_error=item_error,
            item_reason=item_reason,
        )

    def heartbeat(self, job_id: str, owner: str) -> LeaseStatus:
        """Renew `owner`'s lease; tells the task whether it still owns the job and whether
        cancellation was requested. Call at least every RENEW_EVERY."""
        now = self.clock()
        with self.db.transaction() as session:
            repo = JobRepository(session)
            owned = repo.renew(job_id, owner, now + self.lease)
            cancel = repo.cancel_requested(job_id)
        if cancel is None:
            raise self._not_found(job_id)
        return LeaseStatus(owned=owned, cancel_requested=cancel)

    def cancel_requested(self, job_id: str) -> bool:
        """A cheap read for a task's loop (it notices a cancellation within 2 s)."""
        with self.db.read_primary() as session:
            cancel = JobRepository(session).cancel_requested(job_id)
        if cancel is None:
            raise self._not_found(job_id)
        return cancel

    def release(self, job_id: str, owner: str, *, requeue: bool = False) -> None:
        """Give up the lease. `requeue`: the task failed and Huey will retry it; should that
        retry be lost, the sweeper re-enqueues the job after the claim deadline."""
        deadline = self.clock() + self.claim_deadline if requeue else None
        with self.db.transaction() as session:
            JobRepository(session).release(job_id, owner, deadline)

    # Cancelling ---------------------------------------------------------------------------

    def request_cancel(self, job_id: str) -> Job:
        """Mark cancellation requested. A job no task is running (QUEUED, WAITING) ends as
        CANCELLED at once; a RUNNING task notices and stops itself. A cancelled job is returned
        unchanged (retries are safe); one that ended otherwise is FailedPrecondition
        (JOB_ENDED)."""
        now = self.clock()
        event: JobEvent | None = None
        with self.db.transaction() as session:
            repo = JobRepository(session)
            row = repo.lock(job_id)
            if row is None:
                raise self._not_found(job_id)
            state = JobState(row.state)
            if state.terminal and state != JobState.CANCELLED:
                raise FailedPrecondition(
                    f"job {job_id} already ended ({state})", reason="JOB_ENDED"
                )
            if not state.terminal:
                row.cancel_requested = True
                if state in (JobState.QUEUED, JobState.WAITING):
                    event = repo.append_event(row, state=JobState.CANCELLED, now=now)
            job = to_job(row)
        self._publish(event)
        return job

    # The sweeper and retention ------------------------------------------------------------

    def requeue_expired(self, limit: int = 100) -> list[Job]:
        """Jobs whose lease (or claim deadline) expired go back to QUEUED (an event, unless
        already QUEUED) with a fresh claim deadline; returns them for the caller to enqueue
        their tasks again. Each job is rechecked under its lock: a renewal that got there
        first wins."""
        now = self.clock()
        with self.db.read_primary() as session:
            candidates = JobRepository(session).expired(now, limit)
        requeued: list[Job] = []
        for candidate in candidates:
            event: JobEvent | None = None
            with self.db.transaction() as session:
                repo = JobRepository(session)
                row = repo.lock(candidate.id)
                if row is None or row.lease_expire_time is None or row.lease_expire_time > now:
                    continue
                state = JobState(row.state)
                if state.terminal:
                    continue
                if row.cancel_requested:
                    event = repo.append_event(row, state=JobState.CANCELLED, now=now)
                else:
                    if state != JobState.QUEUED:
                        event = repo.append_event(
                            row, state=JobState.QUEUED, message="worker lost; re-enqueued", now=now
                        )
                    row.lease_owner = None
                    row.lease_expire_time = now + self.claim_deadline
                    requeued.append(to_job(row))
            self._publish(event)
            if event is None or event.state == JobState.QUEUED:
                log.info("job re-enqueued", job_id=candidate.id, state=candidate.state.value)
        return requeued

    def fail(self, job_id: str, error: dict[str, Any], message: str = "") -> JobEvent | None:
        """End a job FAILED with `error` (an event) whoever holds its lease: its task failed
        for good. None when it had already ended (cancelled meanwhile)."""
        now = self.clock()
        with self.db.transaction() as session:
            repo = JobRepository(session)
            row = repo.lock(job_id)
            if row is None or JobState(row.state).terminal:
                return None
            row.error = error
            event = repo.append_event(row, state=JobState.FAILED, message=message, now=now)
        self._publish(event)
        return event

    def reopen(self, job_id: str, message: str) -> Job:
        """A FAILED job back to QUEUED (an event) with a fresh claim deadline, for its task to
        be enqueued again (a retried dead letter). FailedPrecondition (JOB_NOT_FAILED) unless
        the job failed."""
        now = self.clock()
        with self.db.transaction() as session:
            repo = JobRepository(session)
            row = repo.lock(job_id)
            if row is None:
                raise self._not_found(job_id)
            if row.state != JobState.FAILED.value:
                raise FailedPrecondition(
                    f"job {job_id} is {row.state}, not FAILED", reason="JOB_NOT_FAILED"
                )
            row.error = None
            row.end_time = None
            row.cancel_requested = False
            event = repo.append_event(row, state=JobState.QUEUED, message=message, now=now)
            row.lease_owner = None
            row.lease_expire_time = now + self.claim_deadline
            job = to_job(row)
        self._publish(event)
        return job

    def prune_events(self) -> int:
        with self.db.transaction() as session:
            return JobRepository(session).prune_events(self.clock() - self.retention)

    # Dead letters -------------------------------------------------------------------------

    def add_dead_letter(
        self,
        task_name: str,
        job_id: str | None,
        args: dict[str, Any],
        error: dict[str, Any],
        attempts: int,
        *,
        request_id: str = "",
        trace_id: str = "",
    ) -> DeadLetter:
        with self.db.transaction() as session:
            return JobRepository(session).add_dead_letter(
                task_name, job_id, args, error, attempts, request_id=request_id, trace_id=trace_id
            )

    def list_dead_letters(
        self, after: tuple[dt.datetime, str] | None = None, limit: int = 50
    ) -> list[DeadLetter]:
        with self.db.read_only() as session:
            return JobRepository(session).list_dead_letters(after, limit)

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        with self.db.read_primary() as session:
            letter = JobRepository(session).get_dead_letter(dead_letter_id)
        if letter is None:
            raise NotFound(DEAD_LETTER_RESOURCE, f"deadLetters/{dead_letter_id}")
        return letter

    def delete_dead_letter(self, dead_letter_id: str) -> None:
        with self.db.transaction() as session:
            deleted = JobRepository(session).delete_dead_letter(dead_letter_id)
        if not deleted:
            raise NotFound(DEAD_LETTER_RESOURCE, f"deadLetters/{dead_letter_id}")


def _same_request(existing: Job, kind: JobKind) -> Job:
    """A retried request gets its job; a request id reused for another kind of job is an
    error, not that other job."""
    if existing.kind != kind:
        raise InvalidArgument.one(
            "request_id", f"was already used for a {existing.kind} job, not a {kind} one"
        )
    return existing


def _check_owner(row: JobRow, owner: str | None, now: dt.datetime) -> None:
    if owner is not None and row.lease_owner != owner:
        raise LeaseLost(f"job {row.id} is no longer leased by {owner}")


# The API's use cases (JobService) ------------------------------------------------------------


class JobService:
    """Get, list, cancel and prepare to watch jobs by their resource names: a job answers
    only under its own athlete (NotFound otherwise)."""

    def __init__(self, store: JobStore, paging: Paging) -> None:
        self.store = store
        self.paging = paging

    def get(self, athlete_id: str, job_id: str) -> Job:
        try:
            job = self.store.get(job_id)
        except NotFound:
            job = None
        if job is None or job.athlete_id != athlete_id:
            raise NotFound(RESOURCE, names.job_name(athlete_id, job_id))
        return job

    def list_page(
        self,
        athlete_id: str | None,
        states: Collection[JobState],
        kinds: Collection[JobKind],
        page_size: int,
        page_token: str,
    ) -> tuple[list[Job], str]:
        """`athlete_id` None: every athlete's jobs. Newest first; the token binds the filters."""
        violations = Violations()
        size = self.paging.size(page_size, violations)
        violations.raise_if_any()
        states = sorted(set(states))
        kinds = sorted(set(kinds))
        query = f"jobs|{athlete_id or '-'}|{','.join(states)}|{','.join(kinds)}"
        after = self.paging.time_key(page_token, query)
        rows = self.store.list_jobs(
            athlete_id, states=states, kinds=kinds, after=after, limit=size + 1
        )
        token = self.paging.next_token(query, rows, size, lambda j: (j.create_time, j.id))
        return rows[:size], token

    def cancel(self, athlete_id: str, job_id: str) -> Job:
        self.get(athlete_id, job_id)
        return self.store.request_cancel(job_id)

    def open_watch(self, athlete_id: str, job_id: str, after_sequence: int) -> Job:
        """The job, once `after_sequence` is checked: InvalidArgument when negative or beyond
        the last event, EventsExpired when events after it are no longer all kept."""
        violations = Violations()
        if after_sequence < 0:
            violations.add("after_sequence", "must not be negative")
            violations.raise_if_any()
        job = self.get(athlete_id, job_id)
        if after_sequence > job.last_event_sequence:
            violations.add(
                "after_sequence",
                f"must not be beyond the job's last event ({job.last_event_sequence})",
            )
            violations.raise_if_any()
        if after_sequence < job.last_event_sequence:
            oldest = self.store.oldest_sequence(job_id)
            if oldest is None or oldest > after_sequence + 1:
                first = job.last_event_sequence + 1 if oldest is None else oldest
                raise EventsExpired(job_id, after_sequence, first, job.last_event_sequence)
        return job


# Watching -----------------------------------------------------------------------------------


class EventSource(Protocol):
    """What `watch` reads (JobStore; blocking calls, run in threads)."""

    def get(self, job_id: str) -> Job: ...

    def events_after(
        self, job_id: str, after_sequence: int, limit: int = ...
    ) -> list[JobEvent]: ...


async def _subscribe(bus: JobEventBus | None, job_id: str) -> Subscription | None:
    if bus is None:
        return None
    try:
        return await bus.subscribe(job_id)
    except BusUnavailable as exc:
        log.warning("job bus unavailable; watching by polling the database", error=str(exc))
        return None


async def watch(
    store: EventSource,
    bus: JobEventBus | None,
    job_id: str,
    after_sequence: int = 0,
    *,
    page_size: int = EVENT_PAGE,
    recheck_seconds: float = 5.0,
    poll_seconds: float = 1.0,
    resubscribe_seconds: float = 5.0,
) -> AsyncGenerator[JobEvent, None]:
    """The job's events after `after_sequence`, in order, each once, ending with the event
    that ends the job. Subscribes first, then replays the database, then takes live events,
    skipping those already seen; a gap in live events, `recheck_seconds` without one, or a
    broken bus sends it back to the database (polled every `poll_seconds` while the bus is
    down, resubscribing every `resubscribe_seconds`).

    Raises NotFound (no such job, or it was deleted while watched) and EventsExpired (events
    after `after_sequence` are no longer kept)."""
    await asyncio.to_thread(store.get, job_id)
    loop = asyncio.get_running_loop()
    subscription = await _subscribe(bus, job_id)
    next_subscribe = loop.time() + resubscribe_seconds
    last = after_sequence
    try:
        while True:
            # The database: everything after `last` (several pages if need be).
            while True:
                events = await asyncio.to_thread(store.events_after, job_id, last, page_size)
                for event in events:
                    if event.sequence != last + 1:
                        raise EventsExpired(job_id, last, event.sequence)
                    last = event.sequence
                    yield event
                    if event.ends_job:
                        return
                if len(events) < page_size:
                    break
            # Live events, until a gap, a quiet spell or a broken bus.
            while True:
                if subscription is None:
                    await asyncio.sleep(poll_seconds)
                    if bus is not None and loop.time() >= next_subscribe:
                        subscription = await _subscribe(bus, job_id)
                        next_subscribe = loop.time() + resubscribe_seconds
                    break
                try:
                    live = await subscription.get(recheck_seconds)
                except BusUnavailable as exc:
                    log.warning("job bus failed; watching by polling the database", error=str(exc))
                    await subscription.close()
                    subscription = None
                    next_subscribe = loop.time() + resubscribe_seconds
                    break
                if live is None:
                    await asyncio.to_thread(store.get, job_id)  # still there?
                    break
                if live.sequence <= last:
                    continue
                if live.sequence > last + 1:
                    break
                last = live.sequence
                yield live
                if live.ends_job:
                    return
    finally:
        if subscription is not None:
            await subscription.close()

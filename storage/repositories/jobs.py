"""SQL for jobs, their events and dead letters.

Writes that read a job and then change it (`lock`, `append_event`) run inside
`Database.transaction()`: on PostgreSQL the job row is locked (`FOR UPDATE`), on SQLite the
unit of work holds the write lock (BEGIN IMMEDIATE), so two writers of one job's events are
serialised and sequences have neither gaps nor duplicates."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from domain.jobs import (
    TERMINAL_STATES,
    DeadLetter,
    Job,
    JobEvent,
    JobKind,
    JobState,
    Progress,
    result_counts,
)
from storage.models import AthleteRow, DeadLetterRow, JobEventRow, JobRow
from storage.repositories.keyset import after_position

_TERMINAL = [state.value for state in TERMINAL_STATES]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def to_job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        athlete_id=row.athlete_id,
        kind=JobKind(row.kind),
        state=JobState(row.state),
        params=dict(row.params or {}),
        progress=Progress.from_json(row.progress),
        create_time=row.create_time,
        last_event_sequence=row.last_event_sequence,
        request_id=row.request_id,
        cancel_requested=row.cancel_requested,
        resume_time=row.resume_time,
        start_time=row.start_time,
        end_time=row.end_time,
        error=row.error,
        result=row.result,
        checkpoint=row.checkpoint,
        attempts=row.attempts,
        lease_owner=row.lease_owner,
        lease_expire_time=row.lease_expire_time,
    )


def _to_dead_letter(row: DeadLetterRow, job_athlete_id: str | None = None) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        task_name=row.task_name,
        job_id=row.job_id,
        args=dict(row.args),
        error=dict(row.error),
        attempts=row.attempts,
        create_time=row.create_time,
        request_id=row.request_id or "",
        trace_id=row.trace_id or "",
        job_athlete_id=job_athlete_id,
    )


class JobRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # Jobs ---------------------------------------------------------------------------------

    def add(
        self,
        athlete_id: str | None,
        kind: JobKind,
        params: dict[str, Any],
        *,
        request_id: str | None = None,
        claim_deadline: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[Job, JobEvent]:
        """A QUEUED job with its first event (sequence 1). `claim_deadline`: when the sweeper
        re-enqueues it if no worker has claimed it by then."""
        now = now or _now()
        row = JobRow(
            id=uuid.uuid4().hex,
            athlete_id=athlete_id,
            kind=kind.value,
            state=JobState.QUEUED.value,
            params=params,
            progress=Progress().to_json(),
            request_id=request_id,
            cancel_requested=False,
            last_event_sequence=1,
            create_time=now,
            lease_expire_time=claim_deadline,
            attempts=0,
        )
        self.session.add(row)
        self.session.flush()  # the job before its event (foreign key)
        event = JobEvent(job_id=row.id, sequence=1, time=now, state=JobState.QUEUED)
        self.session.add(JobEventRow(job_id=row.id, sequence=1, time=now, payload=event.payload()))
        self.session.flush()
        return to_job(row), event

    def get(self, job_id: str) -> Job | None:
        row = self.session.get(JobRow, job_id)
        return None if row is None else to_job(row)

    def get_by_request_id(self, athlete_id: str | None, request_id: str) -> Job | None:
        query = select(JobRow).where(JobRow.request_id == request_id)
        query = query.where(
            JobRow.athlete_id.is_(None) if athlete_id is None else JobRow.athlete_id == athlete_id
        )
        row = self.session.scalars(query).first()
        return None if row is None else to_job(row)

    def active(self, athlete_id: str, kinds: Collection[JobKind]) -> Job | None:
        """The athlete's oldest job of one of `kinds` that has not ended."""
        query = (
            select(JobRow)
            .where(
                JobRow.athlete_id == athlete_id,
                JobRow.kind.in_([kind.value for kind in kinds]),
                JobRow.state.not_in(_TERMINAL),
            )
            .order_by(JobRow.create_time, JobRow.id)
        )
        row = self.session.scalars(query).first()
        return None if row is None else to_job(row)

    def lock_athlete(self, athlete_id: str) -> bool:
        """Serialise job creation for one athlete (FOR NO KEY UPDATE on the athlete's row,
        which leaves readers and child inserts alone); False when the athlete is gone."""
        found = self.session.scalar(
            select(AthleteRow.id).where(AthleteRow.id == athlete_id).with_for_update(key_share=True)
        )
        return found is not None

    def lock(self, job_id: str) -> JobRow | None:
        """The job's row, locked until the unit of work ends (FOR UPDATE; SQLite ignores it
        and relies on BEGIN IMMEDIATE). Fresh from the database, not the session's copy."""
        return self.session.scalars(
            select(JobRow)
            .where(JobRow.id == job_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()

    def list_jobs(
        self,
        athlete_id: str | None,
        *,
        states: Collection[JobState] = (),
        kinds: Collection[JobKind] = (),
        after: tuple[dt.datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first, keyset-paginated on (create_time, id). `athlete_id` None: every
        athlete's jobs (the operator's `athletes/-`)."""
        query = select(JobRow)
        if athlete_id is not None:
            query = query.where(JobRow.athlete_id == athlete_id)
        if states:
            query = query.where(JobRow.state.in_([s.value for s in states]))
        if kinds:
            query = query.where(JobRow.kind.in_([k.value for k in kinds]))
        if after is not None:
            query = query.where(
                after_position(JobRow.create_time, JobRow.id, after, descending=True)
            )
        query = query.order_by(JobRow.create_time.desc(), JobRow.id.desc()).limit(limit)
        return [to_job(row) for row in self.session.scalars(query)]

    def request_cancel(self, job_id: str) -> bool:
        """Mark cancellation requested (a job not yet ended); False when there is no such
        job or it has ended."""
        result = self.session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.state.not_in(_TERMINAL))
            .values(cancel_requested=True)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def cancel_requested(self, job_id: str) -> bool | None:
        return self.session.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))

    def save_checkpoint(self, job_id: str, checkpoint: dict[str, Any] | None) -> None:
        self.session.execute(
            update(JobRow).where(JobRow.id == job_id).values(checkpoint=checkpoint)
        )

    # Leases -------------------------------------------------------------------------------

    def claim(
        self,
        job_id: str,
        owner: str,
        now: dt.datetime,
        lease: dt.timedelta,
        task_id: str | None = None,
    ) -> bool:
        """Take the job's lease when nobody holds it, it expired, `owner` holds it already,
        or (`task_id`) an owner ending in `/<task_id>` holds it (an earlier attempt of the
        same task); True when `owner` now holds it. One conditional UPDATE: two workers
        racing for one job cannot both win. Counts an attempt."""
        takeable = [
            JobRow.lease_owner.is_(None),
            JobRow.lease_owner == owner,
            JobRow.lease_expire_time.is_(None),
            JobRow.lease_expire_time <= now,
        ]
        if task_id:
            takeable.append(JobRow.lease_owner.endswith(f"/{task_id}", autoescape=True))
        result = self.session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.state.not_in(_TERMINAL), or_(*takeable))
            .values(
                lease_owner=owner,
                lease_expire_time=now + lease,
                attempts=JobRow.attempts + 1,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def renew(self, job_id: str, owner: str, until: dt.datetime) -> bool:
        """Extend `owner`'s lease; False when it lost the lease (another worker took over
        after it expired) or the job ended: the task must stop."""
        result = self.session.execute(
            update(JobRow)
            .where(
                JobRow.id == job_id,
                JobRow.lease_owner == owner,
                JobRow.state.not_in(_TERMINAL),
            )
            .values(lease_expire_time=until)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def release(self, job_id: str, owner: str, deadline: dt.datetime | None = None) -> bool:
        """Give up `owner`'s lease; `deadline`: when the sweeper re-enqueues the job if no
        worker has claimed it again by then (None: never)."""
        result = self.session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.lease_owner == owner)
            .values(lease_owner=None, lease_expire_time=deadline)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def expired(self, now: dt.datetime, limit: int = 100) -> list[Job]:
        """Jobs not ended whose lease (or claim deadline) expired: the sweeper's work."""
        live = [s.value for s in JobState if not s.terminal]
        query = (
            select(JobRow)
            .where(JobRow.state.in_(live), JobRow.lease_expire_time <= now)
            .order_by(JobRow.lease_expire_time)
            .limit(limit)
        )
        return [to_job(row) for row in self.session.scalars(query)]

    # Events -------------------------------------------------------------------------------

    def append_event(
        self,
        row: JobRow,
        *,
        state: JobState,
        progress: Progress | None = None,
        item: str = "",
        item_error: str = "",
        item_reason: str = "",
        resume_time: dt.datetime | None = None,
        message: str = "",
        now: dt.datetime | None = None,
    ) -> JobEvent:
        """Apply the change to the (locked) job row and store its event with the next
        sequence, in the caller's unit of work."""
        now = now or _now()
        sequence = row.last_event_sequence + 1
        progress = progress if progress is not None else Progress.from_json(row.progress)
        if state == JobState.RUNNING and row.start_time is None:
            row.start_time = now
        if state.terminal:
            row.end_time = now
            row.lease_owner = None
            row.lease_expire_time = None
        row.state = state.value
        row.progress = progress.to_json()
        row.resume_time = resume_time if state == JobState.WAITING else None
        row.last_event_sequence = sequence
        event = JobEvent(
            job_id=row.id,
            sequence=sequence,
            time=now,
            state=state,
            progress=progress,
            item=item,
            item_error=item_error,
            item_reason=item_reason,
            resume_time=row.resume_time,
            message=message,
            result=result_counts(row.result),
        )
        self.session.add(
            JobEventRow(job_id=row.id, sequence=sequence, time=now, payload=event.payload())
        )
        self.session.flush()
        return event

    def events_after(self, job_id: str, after_sequence: int, limit: int) -> list[JobEvent]:
        rows = self.session.scalars(
            select(JobEventRow)
            .where(JobEventRow.job_id == job_id, JobEventRow.sequence > after_sequence)
            .order_by(JobEventRow.sequence)
            .limit(limit)
        )
        return [JobEvent.from_payload(r.job_id, r.sequence, r.time, r.payload) for r in rows]

    def oldest_sequence(self, job_id: str) -> int | None:
        """The oldest event still kept (None: none kept)."""
        return self.session.scalar(
            select(func.min(JobEventRow.sequence)).where(JobEventRow.job_id == job_id)
        )

    def prune_events(self, ended_before: dt.datetime) -> int:
        """Delete the events of jobs that ended before `ended_before`, except each job's last
        (terminal) event, so a watcher still learns how it ended. Returns rows deleted."""
        ended = (
            select(JobRow.id, JobRow.last_event_sequence)
            .where(JobRow.end_time.is_not(None), JobRow.end_time < ended_before)
            .subquery()
        )
        result = self.session.execute(
            delete(JobEventRow).where(
                JobEventRow.job_id.in_(select(ended.c.id)),
                JobEventRow.sequence
                < select(ended.c.last_event_sequence)
                .where(ended.c.id == JobEventRow.job_id)
                .scalar_subquery(),
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

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
        row = DeadLetterRow(
            id=uuid.uuid4().hex,
            task_name=task_name,
            job_id=job_id,
            args=args,
            error=error,
            attempts=attempts,
            create_time=_now(),
            request_id=request_id,
            trace_id=trace_id,
        )
        self.session.add(row)
        self.session.flush()
        athlete_id = None
        if job_id is not None:
            athlete_id = self.session.scalar(select(JobRow.athlete_id).where(JobRow.id == job_id))
        return _to_dead_letter(row, athlete_id)

    def list_dead_letters(
        self, after: tuple[dt.datetime, str] | None = None, limit: int = 50
    ) -> list[DeadLetter]:
        """Newest first, keyset-paginated on (create_time, id)."""
        query = select(DeadLetterRow, JobRow.athlete_id).outerjoin(
            JobRow, JobRow.id == DeadLetterRow.job_id
        )
        if after is not None:
            query = query.where(
                after_position(DeadLetterRow.create_time, DeadLetterRow.id, after, descending=True)
            )
        query = query.order_by(DeadLetterRow.create_time.desc(), DeadLetterRow.id.desc())
        rows = self.session.execute(query.limit(limit))
        return [_to_dead_letter(row, athlete_id) for row, athlete_id in rows]

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        row = self.session.get(DeadLetterRow, dead_letter_id)
        if row is None:
            return None
        athlete_id = None
        if row.job_id is not None:
            athlete_id = self.session.scalar(
                select(JobRow.athlete_id).where(JobRow.id == row.job_id)
            )
        return _to_dead_letter(row, athlete_id)

    def delete_dead_letter(self, dead_letter_id: str) -> bool:
        result = self.session.execute(
            delete(DeadLetterRow).where(DeadLetterRow.id == dead_letter_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

"""Jobs: kinds, states and the transitions between them, progress, and the events that
record every change (pure: no database, no queue)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.errors import FailedPrecondition

RESOURCE = "stride.dev/Job"


class JobKind(StrEnum):
    STRAVA_SYNC = "STRAVA_SYNC"
    FILE_IMPORT = "FILE_IMPORT"
    RECOMPUTE = "RECOMPUTE"
    STRAVA_CONNECT = "STRAVA_CONNECT"
    STRAVA_DISCONNECT = "STRAVA_DISCONNECT"
    STRAVA_WEBHOOK = "STRAVA_WEBHOOK"
    STRAVA_RECONCILE = "STRAVA_RECONCILE"


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    # Paused until `resume_time` (a spent rate-limit budget, an open circuit).
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# Every state change a job may make. RUNNING/WAITING -> QUEUED is the sweeper putting back a
# job whose worker died (its lease expired). A non-terminal state may also "move" to itself:
# a progress event.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset(
        {
            JobState.WAITING,
            JobState.QUEUED,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
        }
    ),
    JobState.WAITING: frozenset(
        {JobState.RUNNING, JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def can_move(current: JobState, target: JobState) -> bool:
    if current == target:
        return not current.terminal
    return target in TRANSITIONS[current]


class IllegalTransition(FailedPrecondition):
    reason = "JOB_STATE_TRANSITION"

    def __init__(self, job_id: str, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id} cannot move from {current} to {target}")
        self.current = current
        self.target = target


def check_transition(job_id: str, current: JobState, target: JobState) -> None:
    if not can_move(current, target):
        raise IllegalTransition(job_id, current, target)


class ResumeLater(Exception):
    """Raised by a job's work when it may not go on before `resume_at` (epoch seconds): the
    job goes WAITING until then, keeping its checkpoint."""

    def __init__(self, message: str, resume_at: float) -> None:
        super().__init__(message)
        self.resume_at = resume_at


class JobFailure(Exception):
    """Raised by a job's work for an outcome no retry changes (a rejected code, revoked
    access): the job ends FAILED with this status; nothing is dead-lettered."""

    def __init__(self, code: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # a google.rpc.Code name: INVALID_ARGUMENT, FAILED_PRECONDITION...
        self.reason = reason
        self.message = message

    def to_error(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason, "message": self.message}


class EventsExpired(FailedPrecondition):
    """A watcher asked for events after a sequence older than the events still kept."""

    reason = "JOB_EVENTS_EXPIRED"

    def __init__(
        self,
        job_id: str,
        after_sequence: int,
        oldest_kept: int,
        last_event_sequence: int | None = None,
    ) -> None:
        super().__init__(
            f"events of job {job_id} after sequence {after_sequence} are no longer kept;"
            f" the oldest kept is {oldest_kept}"
        )
        self.after_sequence = after_sequence
        self.oldest_kept = oldest_kept
        self.last_event_sequence = last_event_sequence

    def error_metadata(self) -> dict[str, str]:
        metadata = {"first_retained_sequence": str(self.oldest_kept)}
        if self.last_event_sequence is not None:
            metadata["last_event_sequence"] = str(self.last_event_sequence)
        return metadata


@dataclass(frozen=True)
class Progress:
    """Counts of items (activities, files). `total` None means unknown, which differs from a
    known total of 0."""

    completed: int = 0
    failed: int = 0
    skipped: int = 0
    total: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Progress:
        data = data or {}
        total = data.get("total")
        return cls(
            completed=int(data.get("completed", 0)),
            failed=int(data.get("failed", 0)),
            skipped=int(data.get("skipped", 0)),
            total=None if total is None else int(total),
        )


def result_counts(result: Any) -> dict[str, int] | None:
    """The counts of a job's result (created, failed...), without its lists."""
    if not isinstance(result, dict):
        return None
    return {k: v for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)}


@dataclass(frozen=True)
class JobEvent:
    """One change of a job, numbered 1, 2, 3... per job with no gaps. A heartbeat (sent by
    WatchJob while nothing happens) carries the last sequence and is never stored."""

    job_id: str
    sequence: int
    time: dt.datetime
    state: JobState
    progress: Progress = field(default_factory=Progress)
    # The item just processed (e.g. an activity's name) and why it failed, if it did.
    item: str = ""
    item_error: str = ""
    # Why the item failed, as a stable UPPER_SNAKE_CASE code (FILE_CORRUPT).
    item_reason: str = ""
    resume_time: dt.datetime | None = None
    # Why the job failed (terminal FAILED) or a short note on the change.
    message: str = ""
    heartbeat: bool = False
    # The job's result counts right after the step (None on events stored before they were
    # kept: the job's current result stands in).
    result: dict[str, int] | None = None

    @property
    def ends_job(self) -> bool:
        return self.state.terminal and not self.heartbeat

    def payload(self) -> dict[str, Any]:
        """What is stored in job_events.payload (sequence, time and job are columns)."""
        return {
            "state": self.state.value,
            "progress": self.progress.to_json(),
            "item": self.item,
            "item_error": self.item_error,
            "item_reason": self.item_reason,
            "resume_time": None if self.resume_time is None else self.resume_time.isoformat(),
            "message": self.message,
            "result": self.result,
        }

    @classmethod
    def from_payload(
        cls, job_id: str, sequence: int, time: dt.datetime, payload: dict[str, Any]
    ) -> JobEvent:
        resume = payload.get("resume_time")
        return cls(
            job_id=job_id,
            sequence=sequence,
            time=time,
            state=JobState(payload["state"]),
            progress=Progress.from_json(payload.get("progress")),
            item=str(payload.get("item", "")),
            item_error=str(payload.get("item_error", "")),
            item_reason=str(payload.get("item_reason", "")),
            resume_time=None if resume is None else dt.datetime.fromisoformat(resume),
            message=str(payload.get("message", "")),
            result=result_counts(payload.get("result")),
        )

    def to_json(self) -> dict[str, Any]:
        """The whole event (for the bus)."""
        return {
            **self.payload(),
            "job_id": self.job_id,
            "sequence": self.sequence,
            "time": self.time.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobEvent:
        return cls.from_payload(
            str(data["job_id"]),
            int(data["sequence"]),
            dt.datetime.fromisoformat(data["time"]),
            data,
        )


@dataclass(frozen=True)
class Job:
    id: str
    athlete_id: str | None
    kind: JobKind
    state: JobState
    params: dict[str, Any]
    progress: Progress
    create_time: dt.datetime
    last_event_sequence: int = 0
    request_id: str | None = None
    cancel_requested: bool = False
    resume_time: dt.datetime | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    attempts: int = 0
    lease_owner: str | None = None
    lease_expire_time: dt.datetime | None = None

    def leased_by_other(self, owner: str, now: dt.datetime) -> bool:
        return (
            self.lease_owner is not None
            and self.lease_owner != owner
            and self.lease_expire_time is not None
            and self.lease_expire_time > now
        )


@dataclass(frozen=True)
class DeadLetter:
    """A task that failed for good: enough to retry it (AdminService)."""

    id: str
    task_name: str
    job_id: str | None
    args: dict[str, Any]
    error: dict[str, Any]
    attempts: int
    create_time: dt.datetime
    request_id: str = ""
    trace_id: str = ""
    # The athlete of `job_id` (its resource name is under the athlete).
    job_athlete_id: str | None = None

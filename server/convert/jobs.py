"""Domain jobs and their events -> stride.v1.Job and JobEvent; JobState/JobKind filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from stride.v1 import job_pb2

from domain import names
from domain.errors import Violations
from domain.jobs import Job, JobEvent, JobKind, JobState, Progress
from server.convert.common import datetime_to_timestamp
from server.errors import DOMAIN

# A job is deleted with its events this long after it ended (Job.expire_time).
JOB_RETENTION = dt.timedelta(days=30)
# Job.failed_items keeps the first this many.
MAX_FAILED_ITEMS = 100

STATE_TO_PROTO: dict[JobState, job_pb2.JobState.ValueType] = {
    state: job_pb2.JobState.Value(f"JOB_STATE_{state.value}") for state in JobState
}
STATE_FROM_PROTO: dict[int, JobState] = {value: key for key, value in STATE_TO_PROTO.items()}
KIND_TO_PROTO: dict[JobKind, job_pb2.JobKind.ValueType] = {
    kind: job_pb2.JobKind.Value(f"JOB_KIND_{kind.value}") for kind in JobKind
}
KIND_FROM_PROTO: dict[int, JobKind] = {value: key for key, value in KIND_TO_PROTO.items()}

_RESULT_FIELDS = tuple(f.name for f in job_pb2.JobResult.DESCRIPTOR.fields)
_CODE_BY_NAME = {code.name: code.value[0] for code in grpc.StatusCode}


def state_from_proto(value: int, field: str, violations: Violations) -> JobState | None:
    state = STATE_FROM_PROTO.get(value)
    if state is None:
        violations.add(field, "must be a known JobState other than JOB_STATE_UNSPECIFIED")
    return state


def kind_from_proto(value: int, field: str, violations: Violations) -> JobKind | None:
    kind = KIND_FROM_PROTO.get(value)
    if kind is None:
        violations.add(field, "must be a known JobKind other than JOB_KIND_UNSPECIFIED")
    return kind


def name_of(job: Job) -> str:
    # Every job the API creates belongs to an athlete; `-` only for a legacy row without one.
    return names.job_name(job.athlete_id or "-", job.id)


def progress_to_proto(progress: Progress, message: str = "") -> job_pb2.JobProgress:
    proto = job_pb2.JobProgress(
        done=progress.completed + progress.failed + progress.skipped, message=message
    )
    if progress.total is not None:
        proto.total = progress.total
    return proto


def result_to_proto(result: dict[str, Any] | None) -> job_pb2.JobResult:
    values: dict[str, int] = {}
    for key in _RESULT_FIELDS:
        value = (result or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            values[key] = value
    return job_pb2.JobResult(**values)


def error_to_status(error: dict[str, Any] | None) -> status_pb2.Status | None:
    """A stored error (`{"code": int or name, "message": ...}`) as google.rpc.Status."""
    if not error:
        return None
    code = error.get("code")
    if isinstance(code, str):
        code = _CODE_BY_NAME.get(code.upper())
    if not isinstance(code, int) or isinstance(code, bool) or code <= 0:
        code = code_pb2.UNKNOWN
    status = status_pb2.Status(code=code, message=str(error.get("message", "")))
    reason = error.get("reason")
    if isinstance(reason, str) and reason:  # as a failed call would carry it
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
        status.details.append(detail)
    return status


def _item_errors(job: Job) -> list[job_pb2.JobItemError]:
    items = (job.result or {}).get("failed_items") or []
    errors = []
    for entry in items[:MAX_FAILED_ITEMS]:
        if isinstance(entry, dict):
            errors.append(
                job_pb2.JobItemError(
                    item=str(entry.get("item", "")),
                    error=error_to_status(entry.get("error") or {"message": ""}),
                )
            )
    return errors


def job_to_proto(job: Job) -> job_pb2.Job:
    proto = job_pb2.Job(
        name=name_of(job),
        kind=KIND_TO_PROTO[job.kind],
        state=STATE_TO_PROTO[job.state],
        progress=progress_to_proto(job.progress),
        create_time=datetime_to_timestamp(job.create_time),
        last_event_sequence=job.last_event_sequence,
        cancel_requested=job.cancel_requested,
        result=result_to_proto(job.result),
        failed_items=_item_errors(job),
    )
    error = error_to_status(job.error) if job.state == JobState.FAILED else None
    if error is not None:
        proto.error.CopyFrom(error)
    if job.resume_time is not None and job.state == JobState.WAITING:
        proto.resume_time.CopyFrom(datetime_to_timestamp(job.resume_time))
    if job.start_time is not None:
        proto.start_time.CopyFrom(datetime_to_timestamp(job.start_time))
    if job.end_time is not None:
        proto.end_time.CopyFrom(datetime_to_timestamp(job.end_time))
        proto.expire_time.CopyFrom(datetime_to_timestamp(job.end_time + JOB_RETENTION))
    # The job row keeps no update time: its latest known change stands in.
    changes = [t for t in (job.create_time, job.start_time, job.end_time) if t is not None]
    proto.update_time.CopyFrom(datetime_to_timestamp(max(changes)))
    return proto


def event_to_proto(event: JobEvent, job: Job | None = None) -> job_pb2.JobEvent:
    """A stored event, with the result counts it carries; `job` (read after the event) adds
    the cancellation flag and error, and the result where the event has none."""
    proto = job_pb2.JobEvent(
        sequence=event.sequence,
        time=datetime_to_timestamp(event.time),
        state=STATE_TO_PROTO[event.state],
        progress=progress_to_proto(event.progress, event.message),
        item=event.item,
    )
    if event.item_error:
        # The item's own data could not be used (a corrupt file, a malformed record).
        item_error = {"code": "INVALID_ARGUMENT", "message": event.item_error}
        if event.item_reason:
            item_error["reason"] = event.item_reason
        proto.item_error.CopyFrom(error_to_status(item_error) or status_pb2.Status())
    if event.resume_time is not None:
        proto.resume_time.CopyFrom(datetime_to_timestamp(event.resume_time))
    if event.result is not None:
        proto.result.CopyFrom(result_to_proto(event.result))
    if job is not None:
        proto.cancel_requested = job.cancel_requested
        if event.result is None or event.ends_job:
            proto.result.CopyFrom(result_to_proto(job.result))
    if event.state == JobState.FAILED:
        error = error_to_status(job.error if job is not None else None) or status_pb2.Status(
            code=code_pb2.UNKNOWN, message=event.message
        )
        proto.error.CopyFrom(error)
    return proto


def heartbeat_to_proto(job: Job, sequence: int) -> job_pb2.JobEvent:
    """A keep-alive: the last sequence the watcher received, with the job's current state."""
    proto = job_pb2.JobEvent(
        sequence=sequence,
        time=datetime_to_timestamp(dt.datetime.now(dt.UTC)),
        state=STATE_TO_PROTO[job.state],
        progress=progress_to_proto(job.progress),
        heartbeat=True,
        cancel_requested=job.cancel_requested,
        result=result_to_proto(job.result),
    )
    if job.resume_time is not None and job.state == JobState.WAITING:
        proto.resume_time.CopyFrom(datetime_to_timestamp(job.resume_time))
    if job.state == JobState.FAILED:
        error = error_to_status(job.error)
        if error is not None:
            proto.error.CopyFrom(error)
    return proto

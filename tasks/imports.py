"""The FILE_IMPORT job: unpacks a staged upload and imports each activity file in it.

Items are the upload's activity files in a fixed order (then, for a Strava export, its
manual activities: rows without a file). After each item the job records an event naming
it (with its error, if it failed), its progress (files done of total), its result so far
(activities created, unchanged, linked as duplicates (`skipped`), failed) and a checkpoint:
the next item. A cancel stops between items and keeps what was stored; a worker that dies
or stops resumes at the checkpoint, and an item stored just before it died is recognised
by its key (content hash + index) and not stored again.

One bad item fails alone. The job fails only when nothing could be imported and something
failed (a single broken file), with that item's error. The staged file is removed when the
job ends here; `sweep_staging` removes what other endings leave (a queued job cancelled, a
dead-lettered one, a crash).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from domain.activities import ActivityEdit, Measurements, Sample
from domain.errors import NotFound
from domain.files.archive import Item, Upload, open_upload
from domain.files.detect import parse_file
from domain.files.model import FileError
from domain.files.strava_export import ExportRow
from domain.imports import activity_from_file, activity_from_row
from domain.jobs import JobFailure, JobKind, Progress
from services.imports import FileActivities, Outcome
from tasks.declare import periodic
from tasks.jobs import JobCancelled, JobRun, register
from tasks.queue import current_queue
from tasks.tally import Tally

if TYPE_CHECKING:
    from runtime import Runtime

log = structlog.get_logger(__name__)

SWEEP_STAGING_EVERY = dt.timedelta(minutes=10)


@dataclass
class ImportTally(Tally):
    """The job's result, plus files done and failed (the job's progress counts files; one
    file may hold several activities)."""

    files_done: int = 0
    files_failed: int = 0

    def progress(self, total: int) -> Progress:
        return Progress(completed=self.files_done, failed=self.files_failed, total=total)

    def count(self, stored: Outcome, samples: int) -> None:
        if stored == Outcome.CREATED:
            self.created += 1
        elif stored == Outcome.UNCHANGED:
            self.unchanged += 1
        else:
            self.skipped += 1
        self.samples_written += samples

    def fail_file(self, item: str, error: FileError) -> None:
        self.fail(item, error.message, error.reason)
        self.files_failed += 1

    @property
    def imported(self) -> int:
        return self.created + self.unchanged + self.skipped


@dataclass(frozen=True)
class _Work:
    """One item of the job: a file of the upload, or an export row without a file."""

    name: str
    item: Item | None = None
    row: ExportRow | None = None


@dataclass(frozen=True)
class _Activity:
    external_id: str
    edit: ActivityEdit
    measurements: Measurements
    raw: dict[str, Any]
    samples: list[Sample] | None


def _runtime() -> Runtime:
    runtime: Runtime | None = current_queue().resources
    if runtime is None:
        raise JobFailure("FAILED_PRECONDITION", "NO_RUNTIME", "this queue has no runtime")
    return runtime


def run_import(run: JobRun) -> dict[str, Any]:
    runtime = _runtime()
    job = run.job
    athlete_id = job.athlete_id or ""
    file_name = str(job.params.get("file_name", "upload"))
    path = runtime.staging.path_for(job.id)
    if not path.exists():
        raise JobFailure(
            "FAILED_PRECONDITION",
            "UPLOAD_MISSING",
            "the uploaded file is no longer staged (removed after the job first ended?); "
            "upload it again",
        )
    checkpoint = job.checkpoint or {}
    tally = ImportTally.from_json(checkpoint.get("tally"))
    activities = runtime.file_activities
    try:
        time_zone = activities.time_zone(athlete_id)
    except NotFound:  # deleted since the upload (its jobs go with it)
        runtime.staging.discard(job.id)
        raise JobFailure(
            "FAILED_PRECONDITION", "ATHLETE_DELETED", "the athlete was deleted"
        ) from None
    try:
        with open_upload(path, file_name, runtime.archive_limits) as upload:
            work = _work_items(upload)
            if not work:
                raise JobFailure(
                    "INVALID_ARGUMENT",
                    "NO_ACTIVITY_FILES",
                    f"{file_name} holds no .gpx, .tcx or .fit file (optionally .gz)",
                )
            total = len(work)
            start = int(checkpoint.get("next", 0))
            if start == 0:
                run.progress(tally.progress(total), result=tally.to_json())
            for index in range(start, total):
                run.check(tally.to_json())
                entry = work[index]
                error = _import_one(run, upload, entry, activities, tally, time_zone)
                run.progress(
                    tally.progress(total),
                    checkpoint={"next": index + 1, "tally": tally.to_json()},
                    result=tally.to_json(),
                    item=entry.name,
                    item_error=error.message if error else "",
                    item_reason=error.reason if error else "",
                )
    except (JobCancelled, JobFailure):
        runtime.staging.discard(job.id)
        raise
    except Exception:
        _discard_if_gone(runtime, job.id)
        raise
    if tally.imported == 0 and tally.failed_items:
        runtime.staging.discard(job.id)
        first = tally.failed_items[0]
        error = first["error"]
        reason = error.get("reason", "IMPORT_FAILED")
        raise JobFailure(error["code"], reason, f"{first['item']}: {error['message']}")
    runtime.staging.discard(job.id)
    return tally.to_json()


def _discard_if_gone(runtime: Runtime, job_id: str) -> None:
    """Remove the staged file of a job deleted while it ran (with its athlete); whatever
    this lookup meets (the database is down) must not hide the error being raised."""
    try:
        if _ended_check(runtime)(job_id):
            runtime.staging.discard(job_id)
    except Exception:
        log.warning("could not check whether the job still exists", job_id=job_id)


def _work_items(upload: Upload) -> list[_Work]:
    work = [_Work(item.name, item=item) for item in upload.items]
    if upload.export is not None:
        for number, row in enumerate(upload.export.without_file(), start=1):
            label = row.title or row.activity_id or f"row {number}"
            work.append(_Work(f"activities.csv: {label}", row=row))
    return work


def _import_one(
    run: JobRun,
    upload: Upload,
    entry: _Work,
    activities: FileActivities,
    tally: ImportTally,
    time_zone: str,
) -> FileError | None:
    """Import one item into `tally`; its error when it failed (storage errors propagate:
    the job is retried and resumes at this item)."""
    try:
        found = _read(upload, entry, time_zone)
    except FileError as exc:
        tally.fail_file(entry.name, exc)
        return exc
    athlete_id = run.job.athlete_id or ""
    known = activities.known(athlete_id, [a.external_id for a in found])
    for activity in found:
        if activity.external_id in known:
            tally.count(Outcome.UNCHANGED, 0)
            continue
        stored = activities.store(
            athlete_id,
            activity.external_id,
            activity.edit,
            activity.measurements,
            activity.raw,
            activity.samples,
            run.job.id,
        )
        tally.count(stored.outcome, stored.samples_written)
    tally.files_done += 1
    return None


def _read(upload: Upload, entry: _Work, time_zone: str) -> list[_Activity]:
    """The activities an item holds. Any failure of the item's own content is a FileError:
    a parser (or a date computation) that trips over bytes it was never meant to see fails
    that item, not the job. Only reading the staged upload itself (OSError) fails the job."""
    try:
        return _activities_in(upload, entry, time_zone)
    except (FileError, OSError):
        raise
    except Exception as exc:  # logged: a parser bug on hostile bytes
        log.exception("import_item_unreadable", item=entry.name)
        raise FileError("FILE_CORRUPT", f"unreadable: {type(exc).__name__}: {exc}") from exc


def _activities_in(upload: Upload, entry: _Work, time_zone: str) -> list[_Activity]:
    if entry.row is not None:
        edit, measurements = activity_from_row(entry.row, time_zone)
        key = entry.row.activity_id or _digest(repr(entry.row).encode())
        row_raw = {"strava_export_row": _row_json(entry.row)}
        return [_Activity(f"strava-export/{key}", edit, measurements, row_raw, None)]
    assert entry.item is not None
    if entry.item.error is not None:
        raise entry.item.error
    data = upload.read(entry.item)
    digest = _digest(data)
    row = upload.export.for_file(entry.item.name) if upload.export is not None else None
    found = []
    for index, activity in enumerate(parse_file(entry.item.name, data)):
        edit, measurements = activity_from_file(activity, row, time_zone)
        raw: dict[str, Any] = {
            "file": entry.item.name,
            "sha256": digest,
            "index": index,
            "format": activity.format.value,
            "device": activity.device,
        }
        if row is not None:
            raw["strava_export_row"] = _row_json(row)
        samples = activity.samples or None
        found.append(_Activity(f"{digest}/{index}", edit, measurements, raw, samples))
    return found


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _row_json(row: ExportRow) -> dict[str, Any]:
    values = dataclasses.asdict(row)
    if row.start_time is not None:
        values["start_time"] = row.start_time.isoformat()
    return values


@periodic(SWEEP_STAGING_EVERY)
def sweep_staging() -> int:
    """Remove staged uploads whose job ended (or never came to be) and abandoned parts."""
    runtime: Runtime | None = current_queue().resources
    if runtime is None:
        return 0
    return runtime.staging.sweep(_ended_check(runtime))


def _ended_check(runtime: Runtime) -> Callable[[str], bool]:
    def ended(job_id: str) -> bool:
        try:
            return runtime.job_store.get(job_id).state.terminal
        except NotFound:
            return True

    return ended


register(JobKind.FILE_IMPORT, run_import)

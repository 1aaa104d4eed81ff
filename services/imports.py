"""File import: staging an upload and starting its job (for the RPCs), and storing what a
file holds without storing anything twice (for the import job).

An upload is held to `max_upload_bytes` as it arrives, and a single file (anything that is
not a zip archive) to `max_file_bytes` as well; an archive's members are checked when the
job unpacks them (`domain.files.archive`). The job is created only once the last byte is
staged, so an upload cut off mid-stream leaves neither a job nor a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.activities import ActivityEdit, Measurements, Sample, Source
from domain.errors import InvalidArgument, Violations
from domain.files.archive import ZIP_MAGIC
from domain.imports import DuplicateRule
from domain.jobs import Job, JobKind
from domain.validation import check_request_id
from services.activities import ExternalActivities
from services.athletes import require_athlete
from services.jobs import JobLauncher, JobStore
from storage.database import Database
from storage.repositories.imports import ImportRepository
from storage.staging import StagedUpload, Staging, UploadTooLarge

MAX_FILE_NAME = 255


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int
    max_file_bytes: int


class Upload:
    """An upload in progress: `add` each chunk, then ImportService.finish (or `abort`)."""

    def __init__(self, staged: StagedUpload, limits: UploadLimits, declared: int) -> None:
        self.staged = staged
        self.limits = limits
        self.declared = declared
        self._head = b""  # the first bytes, until they say whether this is a zip

    def add(self, chunk: bytes) -> None:
        if len(self._head) < len(ZIP_MAGIC[0]):
            self._head += chunk[: len(ZIP_MAGIC[0]) - len(self._head)]
            if len(self._head) == len(ZIP_MAGIC[0]) and not self._head.startswith(ZIP_MAGIC):
                self.staged.set_limit(self.limits.max_file_bytes)  # one file: its limit too
        try:
            self.staged.write(chunk)
        except UploadTooLarge as exc:
            raise _too_large("chunk", exc.limit) from None
        if self.declared and self.staged.size > self.declared:
            self.staged.abort()
            raise InvalidArgument.one(
                "chunk", f"the upload is longer than header.size_bytes ({self.declared})"
            )

    def abort(self) -> None:
        self.staged.abort()


class ImportService:
    def __init__(
        self,
        db: Database,
        jobs: JobStore,
        staging: Staging,
        launch: JobLauncher,
        limits: UploadLimits,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.staging = staging
        self.launch = launch
        self.limits = limits

    def begin(
        self, athlete_id: str, file_name: str, size_bytes: int, request_id: str, fields: str = ""
    ) -> Upload:
        """Check what the first message says (before any byte is accepted) and open the
        staging file. `fields`: the prefix of the request's field names ("header.")."""
        violations = Violations()
        name = file_name.strip()
        if not name:
            violations.add(f"{fields}file_name", "is required")
        elif len(name) > MAX_FILE_NAME or any(c in name for c in "\x00\n\r"):
            violations.add(
                f"{fields}file_name", f"must be at most {MAX_FILE_NAME} characters on one line"
            )
        if size_bytes < 0:
            violations.add(f"{fields}size_bytes", "must not be negative")
        if request_id:
            check_request_id(violations, f"{fields}request_id", request_id)
        violations.raise_if_any()
        if size_bytes > self.limits.max_upload_bytes:
            raise _too_large(f"{fields}size_bytes", self.limits.max_upload_bytes)
        with self.db.read_primary() as session:
            require_athlete(session, athlete_id)
        return Upload(self.staging.begin(self.limits.max_upload_bytes), self.limits, size_bytes)

    def finish(self, athlete_id: str, upload: Upload, file_name: str, request_id: str) -> Job:
        """The import job for a completely staged upload (the one `request_id` already
        started, when it did: this upload's bytes are then dropped)."""
        size = upload.staged.size
        if size == 0:
            upload.abort()
            raise InvalidArgument.one("chunk", "the upload is empty")
        if upload.declared and size != upload.declared:
            upload.abort()
            raise InvalidArgument.one(
                "chunk", f"the upload ended after {size} of header.size_bytes {upload.declared}"
            )
        try:
            job, created = self.jobs.create(
                athlete_id,
                JobKind.FILE_IMPORT,
                {"file_name": file_name.strip(), "size_bytes": size},
                request_id or None,
            )
        except BaseException:
            upload.abort()
            raise
        if not created:
            upload.abort()
            return job
        try:
            self.staging.commit(upload.staged, job.id)
        except Exception:  # a full disk, or the upload aborted under it: the job cannot run
            upload.abort()
            self.jobs.fail(
                job.id, {"code": "UNAVAILABLE", "message": "the upload could not be staged"}
            )
            raise
        # Should this enqueue be lost, the sweeper enqueues the job after its claim deadline.
        self.launch(job)
        return job


def _too_large(field: str, limit: int) -> InvalidArgument:
    return InvalidArgument.one(
        field, f"uploads are limited to {limit} bytes", reason="UPLOAD_TOO_LARGE"
    )


class Outcome(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"  # this very item was imported before
    LINKED = "linked"  # the athlete already had the activity (duplicate rule)


@dataclass(frozen=True)
class Stored:
    outcome: Outcome
    activity_id: str | None
    samples_written: int = 0


class FileActivities:
    """Activities from files, keyed by (athlete, file, content hash + index): importing the
    same bytes again stores nothing, and one that matches an activity the athlete already
    has (whatever its source) is linked to it instead of stored twice."""

    def __init__(self, db: Database, rule: DuplicateRule) -> None:
        self.db = db
        self.rule = rule
        self.writer = ExternalActivities(db, Source.FILE)

    def known(self, athlete_id: str, external_ids: list[str]) -> set[str]:
        with self.db.read_primary() as session:
            return ImportRepository(session).known(athlete_id, Source.FILE, external_ids)

    def time_zone(self, athlete_id: str) -> str:
        with self.db.read_primary() as session:
            return require_athlete(session, athlete_id).profile.time_zone

    def store(
        self,
        athlete_id: str,
        external_id: str,
        edit: ActivityEdit,
        measurements: Measurements,
        raw: dict[str, Any],
        samples: list[Sample] | None,
        job_id: str,
    ) -> Stored:
        duplicate = self._link_duplicate(athlete_id, external_id, measurements)
        if duplicate is not None:
            return Stored(Outcome.LINKED, duplicate)
        activity, created, written = self.writer.write(
            athlete_id, external_id, edit, measurements, raw, samples, job_id, derived=True
        )
        outcome = Outcome.CREATED if created else Outcome.UNCHANGED
        return Stored(outcome, activity.id, written)

    def _link_duplicate(
        self, athlete_id: str, external_id: str, measurements: Measurements
    ) -> str | None:
        if not self.rule.enabled:
            return None
        start, distance = measurements.start_time, measurements.distance_meters
        with self.db.transaction() as session:
            repo = ImportRepository(session)
            candidates = repo.starting_between(
                athlete_id, start - self.rule.window, start + self.rule.window
            )
            # The sessions of one multisport file follow each other closely: never
            # duplicates of one another.
            same_file = external_id.split("/", 1)[0] + "/"
            matches = [
                c
                for c in candidates
                if self.rule.matches(start, distance, c.start_time, c.distance_meters)
                and not (c.source == Source.FILE and (c.external_id or "").startswith(same_file))
            ]
            if not matches:
                return None
            best = min(matches, key=lambda c: abs((c.start_time - start).total_seconds()))
            repo.link(athlete_id, Source.FILE, external_id, best.activity_id)
            return best.activity_id

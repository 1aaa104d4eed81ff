"""Uploaded files waiting for their import job: one file per job in the staging directory.

An upload is written to `<random>.part` as it arrives; once complete and its job exists it is
renamed to `<job id>.upload`, which is all a worker needs to find it (the job's params hold
no path, so workers on other hosts reach the same files through their own mount of the
shared directory). A cut-off upload removes its `.part` file; the import job removes its
`.upload` when it ends. `sweep` removes what a crash left behind: `.part` files nobody has
written to for a while, and `.upload` files whose job has ended or does not exist.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import structlog

log = structlog.get_logger(__name__)

PART = ".part"
UPLOAD = ".upload"
# A `.part` file untouched this long belongs to an upload that died with its server.
STALE_PART_SECONDS = 3600.0
# An `.upload` this young may belong to a job being created right now.
UPLOAD_GRACE_SECONDS = 300.0


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class StagedUpload:
    """One upload being written. Thread-safe: chunks are written from worker threads while
    the event loop may abort the upload (a client gone) at any time."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._lock = threading.Lock()
        self._file: BinaryIO | None = open(path, "xb")  # noqa: SIM115 (closed by finish/abort)

    def write(self, data: bytes) -> None:
        """Append `data`; raises UploadTooLarge (and aborts) past `limit` bytes."""
        with self._lock:
            if self._file is None:
                raise ValueError("the upload was aborted")
            if self.size + len(data) > self.limit:
                self._discard()
                raise UploadTooLarge(self.limit)
            self._file.write(data)
            self.size += len(data)

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self.limit = min(self.limit, limit)

    def finish(self, target: Path) -> None:
        """Make the bytes durable and move them to `target` (the job's file)."""
        with self._lock:
            if self._file is None:
                raise ValueError("the upload was aborted")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self.path, target)

    def abort(self) -> None:
        """Remove the partial file (idempotent; a no-op after `finish`)."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)


class Staging:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def begin(self, limit: int) -> StagedUpload:
        self.directory.mkdir(parents=True, exist_ok=True)
        return StagedUpload(self.directory / f"{secrets.token_hex(16)}{PART}", limit)

    def path_for(self, job_id: str) -> Path:
        return self.directory / f"{job_id}{UPLOAD}"

    def commit(self, upload: StagedUpload, job_id: str) -> None:
        upload.finish(self.path_for(job_id))

    def discard(self, job_id: str) -> None:
        self.path_for(job_id).unlink(missing_ok=True)

    def sweep(self, job_has_ended: Callable[[str], bool], *, now: float | None = None) -> int:
        """Remove leftovers (see the module docstring); `job_has_ended(job_id)` is True for
        a job that ended or does not exist. Returns how many files were removed."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                age = now - entry.stat().st_mtime
            except FileNotFoundError:
                continue
            name = entry.name
            stale = (name.endswith(PART) and age > STALE_PART_SECONDS) or (
                name.endswith(UPLOAD)
                and age > UPLOAD_GRACE_SECONDS
                and job_has_ended(name.removesuffix(UPLOAD))
            )
            if stale:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
                log.info("staging_file_removed", file=name, age_seconds=round(age))
        return removed

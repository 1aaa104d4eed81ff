"""`stride import PATH…`: upload activity files or a Strava export, then watch the jobs."""

from __future__ import annotations

import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import grpc
from stride.v1 import activity_pb2, job_pb2

from cli.app import App, athlete_option, common_options, pass_app, progress_option
from cli.connection import athlete_name
from cli.errors import retry_delay
from cli.output import short_id
from cli.watch import JobWatcher, Outcome, counts, state_label

CHUNK_BYTES = 1024 * 1024  # the server's limit per chunk message
IMPORTABLE = (".gpx", ".tcx", ".fit", ".gz", ".zip")
UPLOAD_ATTEMPTS = 6


@dataclass
class Upload:
    """One upload, hence one import job: a file, a zip as given, or several files bundled."""

    label: str
    path: Path
    file_name: str


def expand(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; a directory's importable files (GPX, TCX, FIT, .gz, .zip), sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMPORTABLE
            )
            if not inside:
                raise click.BadParameter(
                    f"{path} holds no .gpx, .tcx, .fit, .gz or .zip files", param_hint="PATH"
                )
            found.extend(inside)
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def plan(files: list[Path], scratch: Path) -> list[Upload]:
    """Each .zip (a Strava export) is its own upload; other files go in one upload, bundled
    into a zip when there are several, so one job shows them all as files done of total."""
    archives = [p for p in files if p.suffix.lower() == ".zip"]
    singles = [p for p in files if p.suffix.lower() != ".zip"]
    uploads = [Upload(p.name, p, p.name) for p in archives]
    if len(singles) == 1:
        uploads.insert(0, Upload(singles[0].name, singles[0], singles[0].name))
    elif singles:
        bundle = scratch / "stride-import.zip"
        used: set[str] = set()
        with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in singles:
                name = _unique_name(path.name, used)
                used.add(name.casefold())
                archive.write(path, arcname=name)
        uploads.insert(0, Upload(f"{len(singles)} files", bundle, bundle.name))
    return uploads


def _unique_name(name: str, used: set[str]) -> str:
    """`name`, or `name` with a number before its whole extension (`run-2.gpx.gz`) when a
    file of another folder took it; compared without case, as the server compares."""
    stem, dot, extension = name.partition(".")
    candidate, number = name, 1
    while candidate.casefold() in used:
        number += 1
        candidate = f"{stem}-{number}{dot}{extension}"
    return candidate


def upload_requests(
    parent: str, upload: Upload
) -> Iterator[activity_pb2.UploadActivityFileRequest]:
    """The header, then the file's bytes in chunks of at most 1 MiB."""
    size = upload.path.stat().st_size
    yield activity_pb2.UploadActivityFileRequest(
        header=activity_pb2.UploadHeader(parent=parent, file_name=upload.file_name, size_bytes=size)
    )
    with upload.path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield activity_pb2.UploadActivityFileRequest(chunk=chunk)


def send(app: App, parent: str, upload: Upload) -> job_pb2.Job:
    """Upload, waiting and trying again while the server says it is rate limited."""
    connection = app.connection
    for attempt in range(UPLOAD_ATTEMPTS):
        try:
            return connection.activities.UploadActivityFile(
                upload_requests(parent, upload), metadata=connection.metadata
            )
        except grpc.RpcError as error:
            wait = retry_delay(error)
            if wait is None or attempt == UPLOAD_ATTEMPTS - 1:
                raise
            app.output.notice(f"{upload.label}: rate limited, trying again in {wait:.1f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


@click.command(name="import")
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, readable=True, path_type=Path),
    metavar="PATH...",
)
@athlete_option
@click.option("--no-watch", is_flag=True, help="Upload and print the jobs, without watching.")
@common_options
@progress_option
@pass_app
def import_files(app: App, paths: tuple[Path, ...], athlete: str | None, no_watch: bool) -> None:
    """Import activity files (GPX, TCX, FIT, optionally .gz) or Strava exports (.zip).

    Files (and the activity files of a directory) are uploaded together as one import
    job; each .zip is a job of its own. The jobs are watched live: files done of total,
    created/skipped/failed, and each file that fails with its reason (reconnecting if the
    connection drops). Exits 1 when a job fails or is cancelled; a job that imported
    some files and failed others succeeds (the failures are listed).

    \b
    stride import run.fit ride.gpx.gz
    stride import ~/Downloads/export_12345.zip"""
    parent = athlete_name(athlete)
    files = expand(paths)
    output = app.output
    started: list[tuple[Upload, job_pb2.Job]] = []
    with tempfile.TemporaryDirectory(prefix="stride-import-") as scratch:
        for upload in plan(files, Path(scratch)):
            job = send(app, parent, upload)
            started.append((upload, job))
            if output.as_json:
                output.json_line({"job": job.name, "file": upload.label, "uploaded": True})
            else:
                output.notice(f"uploaded {upload.label}: job {job.name}")
    if no_watch:
        if not output.as_json:
            output.table(
                ["file", "job"], ([u.label, j.name] for u, j in started), title="Import jobs"
            )
        return
    connection = app.connection
    outcomes: list[Outcome] = []
    with JobWatcher(output, connection.jobs, connection.metadata) as watcher:
        for upload, job in started:
            outcomes.append(watcher.watch(job.name, upload.label))
    if not output.as_json:
        summarize(app, outcomes)
    if not all(outcome.ok for outcome in outcomes):
        sys.exit(1)


def summarize(app: App, outcomes: list[Outcome]) -> None:
    output = app.output
    output.table(
        ["file", "job", "state", "result"],
        ([o.label, short_id(o.name), state_label(o.state), counts(o.result)] for o in outcomes),
        title="Imports",
    )
    failed = [(o.label, item, lines) for o in outcomes for item, lines in o.failed_items]
    if failed:
        output.table(
            ["upload", "file", "error"],
            ([label, item, "\n".join(lines)] for label, item, lines in failed),
            title="Files that failed",
        )

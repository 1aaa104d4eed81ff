"""`stride import PATH…`: upload activity files or a Strava export, then watch the jobs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
from stride.v1 import activity_pb2, job_pb2

from cli.app import App, athlete_option, common_options, pass_app, progress_option
from cli.connection import athlete_name
from cli.output import short_id
from cli.watch import JobWatcher, Outcome, counts, state_label

CHUNK_BYTES = 1024 * 1024  # the server's limit per chunk message
IMPORTABLE = (".gpx", ".tcx", ".fit", ".gz", ".zip")


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
    return found


def upload_requests(
    parent: str, path: Path, on_chunk: object = None
) -> Iterator[activity_pb2.UploadActivityFileRequest]:
    """The header, then the file's bytes in chunks of at most 1 MiB."""
    size = path.stat().st_size
    yield activity_pb2.UploadActivityFileRequest(
        header=activity_pb2.UploadHeader(parent=parent, file_name=path.name, size_bytes=size)
    )
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield activity_pb2.UploadActivityFileRequest(chunk=chunk)
            if callable(on_chunk):
                on_chunk(len(chunk))


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
    """Import activity files (GPX, TCX, FIT, optionally .gz) or a Strava export (.zip).

    Each PATH is uploaded (a directory: its activity files) and becomes one import job;
    the jobs are then watched live: files done of total, created/skipped/failed, and each
    file that fails with its reason. Exits 1 when a job fails or is cancelled; a job that
    imported some files and failed others succeeds (the failures are listed)."""
    parent = athlete_name(athlete)
    files = expand(paths)
    connection = app.connection
    output = app.output
    uploaded: list[tuple[Path, job_pb2.Job]] = []
    for path in files:
        job = connection.activities.UploadActivityFile(
            upload_requests(parent, path), metadata=connection.metadata
        )
        uploaded.append((path, job))
        if output.as_json:
            output.json_line({"job": job.name, "file": str(path), "uploaded": True})
        else:
            output.notice(f"uploaded {path} ({path.stat().st_size:,} bytes): job {job.name}")
    if no_watch:
        if not output.as_json:
            output.table(
                ["file", "job"], ([str(p), j.name] for p, j in uploaded), title="Import jobs"
            )
        return
    outcomes: list[Outcome] = []
    with JobWatcher(output, connection.jobs, connection.metadata) as watcher:
        for path, job in uploaded:
            outcomes.append(watcher.watch(job.name, path.name))
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

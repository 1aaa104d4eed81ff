"""`stride jobs list|get|watch|cancel` and `stride sync`."""

from __future__ import annotations

import datetime as dt
import sys

import click
from stride.v1 import job_pb2, sync_pb2

from cli.app import App, athlete_option, common_options, pass_app, progress_option
from cli.connection import athlete_name, child_name
from cli.errors import status_lines
from cli.output import Output, enum_label, enum_names, short_id, timestamp, to_dict
from cli.pages import collect, limit_option, page_size_option
from cli.params import DateOrTime
from cli.watch import JobWatcher, counts, state_label

STATES = [n.removeprefix("JOB_STATE_").lower() for n in enum_names(job_pb2.JobState.DESCRIPTOR)]
KINDS = [n.removeprefix("JOB_KIND_").lower() for n in enum_names(job_pb2.JobKind.DESCRIPTOR)]


def kind_label(kind: int) -> str:
    return enum_label(job_pb2.JobKind.Name(kind), "JOB_KIND_")  # type: ignore[arg-type]


def progress_label(job: job_pb2.Job) -> str:
    if job.progress.HasField("total"):
        return f"{job.progress.done}/{job.progress.total}"
    return str(job.progress.done) if job.progress.done else ""


def show_job(output: Output, job: job_pb2.Job) -> None:
    if output.as_json:
        output.message(job)
        return
    error = status_lines(job.error) if job.HasField("error") else []
    output.fields(
        [
            ("name", job.name),
            ("kind", kind_label(job.kind)),
            (
                "state",
                state_label(job.state) + (" (cancel requested)" if job.cancel_requested else ""),
            ),
            ("progress", progress_label(job)),
            ("message", job.progress.message),
            ("result", counts(job.result) if job.HasField("result") else ""),
            ("error", "\n".join(error)),
            ("created", timestamp(job.create_time)),
            ("started", timestamp(job.start_time)),
            ("ended", timestamp(job.end_time)),
            ("resumes", timestamp(job.resume_time)),
            ("last event", str(job.last_event_sequence)),
        ]
    )
    if job.failed_items:
        output.table(
            ["item", "error"],
            ([item.item, "\n".join(status_lines(item.error))] for item in job.failed_items),
            title="Failed items",
        )


@click.group(name="jobs")
def group() -> None:
    """List, show, watch and cancel jobs (imports, Strava syncs, recomputations)."""


@group.command(name="list")
@athlete_option
@click.option("--state", "states", type=click.Choice(STATES), multiple=True, help="Repeatable.")
@click.option("--kind", "kinds", type=click.Choice(KINDS), multiple=True, help="Repeatable.")
@limit_option
@page_size_option
@common_options
@pass_app
def list_jobs(
    app: App,
    athlete: str | None,
    states: tuple[str, ...],
    kinds: tuple[str, ...],
    limit: int,
    page_size: int | None,
) -> None:
    """List an athlete's jobs, newest first (--athlete - : every athlete, admin token)."""
    parent = "athletes/-" if athlete == "-" else athlete_name(athlete)
    request = job_pb2.ListJobsRequest(
        parent=parent,
        states=[job_pb2.JobState.Value("JOB_STATE_" + s.upper()) for s in states],
        kinds=[job_pb2.JobKind.Value("JOB_KIND_" + k.upper()) for k in kinds],
    )
    connection = app.connection

    def fetch(size: int, token: str) -> job_pb2.ListJobsResponse:
        request.page_size, request.page_token = size, token
        return connection.jobs.ListJobs(request, metadata=connection.metadata)

    found, token = collect(fetch, lambda page: list(page.jobs), limit, page_size)
    output = app.output
    if output.as_json:
        output.json({"jobs": [to_dict(j) for j in found], "next_page_token": token})
        return
    every = parent == "athletes/-"
    columns = ["id", "kind", "state", "progress", "result", "created"]
    output.table(
        ["athlete", *columns] if every else columns,
        (
            [
                *([j.name.split("/")[1]] if every else []),
                short_id(j.name),
                kind_label(j.kind),
                state_label(j.state),
                progress_label(j),
                counts(j.result) if j.HasField("result") else "",
                timestamp(j.create_time),
            ]
            for j in found
        ),
        title="Jobs",
    )
    if token:
        output.notice("more jobs: raise --limit (0 for all)")


@group.command(name="get")
@click.argument("job")
@athlete_option
@common_options
@pass_app
def get_job(app: App, job: str, athlete: str | None) -> None:
    """Show JOB: athletes/ID/jobs/ID, or a job id with --athlete."""
    connection = app.connection
    found = connection.jobs.GetJob(
        job_pb2.GetJobRequest(name=child_name(job, "jobs", athlete)),
        metadata=connection.metadata,
    )
    show_job(app.output, found)


@group.command(name="watch")
@click.argument("job")
@athlete_option
@click.option(
    "--after", type=click.IntRange(min=0), default=0, help="Only events after this sequence."
)
@common_options
@progress_option
@pass_app
def watch_job(app: App, job: str, athlete: str | None, after: int) -> None:
    """Watch JOB live until it ends (reconnecting if the connection drops).

    Exits 1 when the job fails or is cancelled."""
    name = child_name(job, "jobs", athlete)
    watch_and_exit(app, name, short_id(name), after)


def watch_and_exit(app: App, name: str, label: str, after: int = 0) -> None:
    connection = app.connection
    with JobWatcher(app.output, connection.jobs, connection.metadata) as watcher:
        outcome = watcher.watch(name, label, after)
    if not app.output.as_json:
        app.output.console.print(
            f"{label}: {state_label(outcome.state)}, {counts(outcome.result)}", markup=False
        )
    if not outcome.ok:
        sys.exit(1)


@group.command(name="cancel")
@click.argument("job")
@athlete_option
@common_options
@pass_app
def cancel_job(app: App, job: str, athlete: str | None) -> None:
    """Ask JOB to stop (an import stops between files and keeps what it imported)."""
    connection = app.connection
    found = connection.jobs.CancelJob(
        job_pb2.CancelJobRequest(name=child_name(job, "jobs", athlete)),
        metadata=connection.metadata,
    )
    show_job(app.output, found)


@click.command(name="sync")
@athlete_option
@click.option("--full", is_flag=True, help="Fetch every activity again, not only new ones.")
@click.option("--after", type=DateOrTime(), help="Only activities started after this.")
@click.option("--no-watch", is_flag=True, help="Start the sync and print its job.")
@common_options
@progress_option
@pass_app
def sync(
    app: App, athlete: str | None, full: bool, after: dt.datetime | None, no_watch: bool
) -> None:
    """Start a Strava sync for a connected athlete and watch it live."""
    request = sync_pb2.StartSyncRequest(name=f"{athlete_name(athlete)}/stravaConnection", full=full)
    if after:
        request.after.FromDatetime(after.astimezone(dt.UTC))
    connection = app.connection
    job = connection.sync.StartSync(request, metadata=connection.metadata)
    if no_watch:
        show_job(app.output, job)
        return
    if not app.output.as_json:
        app.output.notice(f"sync started: job {job.name}")
    watch_and_exit(app, job.name, "strava sync")

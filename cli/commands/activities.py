"""`stride activities list|get`."""

from __future__ import annotations

import datetime as dt

import click
from google.protobuf.timestamp_pb2 import Timestamp
from stride.v1 import activity_pb2, common_pb2

from cli.app import App, athlete_option, common_options, pass_app
from cli.connection import athlete_name, child_name
from cli.output import (
    duration,
    enum_label,
    kilometres,
    number,
    pace,
    short_id,
    timestamp,
    to_dict,
)
from cli.pages import collect, limit_option, page_size_option
from cli.params import DateOrTime, Sport


def sport_label(value: int) -> str:
    return enum_label(common_pb2.SportType.Name(value), "SPORT_TYPE_")  # type: ignore[arg-type]


def age_grade_label(activity: activity_pb2.Activity) -> str:
    if not activity.HasField("age_grade"):
        return ""
    return f"{activity.age_grade.age_graded_percent:.1f} %"


@click.group(name="activities")
def group() -> None:
    """List and show an athlete's activities."""


def _stamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


@group.command(name="list")
@athlete_option
@click.option(
    "--sport", "sports", type=Sport(), multiple=True, help="Only this sport (repeatable)."
)
@click.option(
    "--from", "start_from", type=DateOrTime(), help="Started at or after (date or ISO time)."
)
@click.option(
    "--to",
    "start_to",
    type=DateOrTime(end_of_day=True),
    help="Started before (a bare date includes that whole day).",
)
@click.option("--oldest-first", is_flag=True, help="Oldest first [default: newest first].")
@click.option("--job", "source_job", help="Only what this import or sync job created.")
@limit_option
@page_size_option
@common_options
@pass_app
def list_activities(
    app: App,
    athlete: str | None,
    sports: tuple[common_pb2.SportType.ValueType, ...],
    start_from: dt.datetime | None,
    start_to: dt.datetime | None,
    oldest_first: bool,
    source_job: str | None,
    limit: int,
    page_size: int | None,
) -> None:
    """List an athlete's activities, newest first."""
    parent = athlete_name(athlete)
    request = activity_pb2.ListActivitiesRequest(
        parent=parent,
        sport_types=list(sports),
        descending=not oldest_first,
    )
    if start_from:
        request.start_time_from.CopyFrom(_stamp(start_from))
    if start_to:
        request.start_time_to.CopyFrom(_stamp(start_to))
    if source_job:
        request.source_job = child_name(source_job, "jobs", parent)
    connection = app.connection

    def fetch(size: int, token: str) -> activity_pb2.ListActivitiesResponse:
        request.page_size, request.page_token = size, token
        return connection.activities.ListActivities(request, metadata=connection.metadata)

    found, token = collect(fetch, lambda page: list(page.activities), limit, page_size)
    output = app.output
    if output.as_json:
        output.json({"activities": [to_dict(a) for a in found], "next_page_token": token})
        return
    output.table(
        ["id", "start", "sport", "title", "distance", "moving", "pace", "age grade"],
        (
            [
                short_id(a.name),
                timestamp(a.start_time),
                sport_label(a.sport_type),
                a.title,
                kilometres(a.distance_meters),
                duration(a.moving_time if a.HasField("moving_time") else a.elapsed_time),
                pace(
                    a.distance_meters,
                    a.moving_time if a.HasField("moving_time") else a.elapsed_time,
                ),
                age_grade_label(a),
            ]
            for a in found
        ),
        title="Activities",
    )
    if token:
        output.notice("more activities: raise --limit (0 for all)")


@group.command(name="get")
@click.argument("activity")
@athlete_option
@common_options
@pass_app
def get_activity(app: App, activity: str, athlete: str | None) -> None:
    """Show ACTIVITY: athletes/ID/activities/ID, or an activity id with --athlete."""
    connection = app.connection
    found = connection.activities.GetActivity(
        activity_pb2.GetActivityRequest(name=child_name(activity, "activities", athlete)),
        metadata=connection.metadata,
    )
    output = app.output
    if output.as_json:
        output.message(found)
        return
    moving = found.moving_time if found.HasField("moving_time") else found.elapsed_time
    grade = found.age_grade
    output.fields(
        [
            ("name", found.name),
            ("title", found.title),
            ("sport", sport_label(found.sport_type)),
            ("start", timestamp(found.start_time)),
            ("time zone", found.time_zone),
            ("distance", kilometres(found.distance_meters)),
            ("elapsed time", duration(found.elapsed_time)),
            ("moving time", duration(found.moving_time)),
            ("pace", pace(found.distance_meters, moving)),
            (
                "elevation gain",
                f"{number(found.total_elevation_gain_meters, 0)} m"
                if found.total_elevation_gain_meters
                else "",
            ),
            (
                "average heart rate",
                f"{found.average_heart_rate_bpm:.0f} bpm"
                if found.HasField("average_heart_rate_bpm")
                else "",
            ),
            (
                "max heart rate",
                f"{found.max_heart_rate_bpm:.0f} bpm"
                if found.HasField("max_heart_rate_bpm")
                else "",
            ),
            (
                "average cadence",
                f"{found.average_cadence_rpm:.0f} rpm"
                if found.HasField("average_cadence_rpm")
                else "",
            ),
            (
                "average power",
                f"{found.average_power_watts:.0f} W"
                if found.HasField("average_power_watts")
                else "",
            ),
            ("samples", str(found.sample_count) if found.sample_count else ""),
            (
                "source",
                enum_label(activity_pb2.ActivitySource.Name(found.source), "ACTIVITY_SOURCE_"),
            ),
            ("source job", found.source_job),
            (
                "age grade",
                f"{grade.age_graded_percent:.1f} % (age-graded time "
                f"{duration(grade.age_graded_time)})"
                if found.HasField("age_grade")
                else "",
            ),
            ("description", found.description),
        ]
    )

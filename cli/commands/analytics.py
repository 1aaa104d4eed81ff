"""`stride summaries`, `stride records`, `stride age-grade`."""

from __future__ import annotations

import datetime as dt

import click
from google.protobuf.duration_pb2 import Duration
from google.type import date_pb2
from stride.v1 import analytics_pb2, common_pb2

from cli.app import App, athlete_option, common_options, pass_app
from cli.connection import athlete_name, child_name
from cli.output import (
    date,
    duration,
    enum_label,
    enum_names,
    kilometres,
    number,
    pace,
    short_id,
    to_dict,
)
from cli.pages import collect, limit_option, page_size_option
from cli.params import Day, Distance, Sport, Time, sex_value


def _date(value: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=value.year, month=value.month, day=value.day)


def _duration(total: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(round(total * 1e9))
    return value


def sport_label(value: int) -> str:
    return enum_label(common_pb2.SportType.Name(value), "SPORT_TYPE_")  # type: ignore[arg-type]


@click.command(name="summaries")
@athlete_option
@click.option(
    "--period",
    type=click.Choice(["week", "month"], case_sensitive=False),
    default="week",
    show_default=True,
)
@click.option("--from", "start", type=Day(), help="First day [default: the server's].")
@click.option("--to", "end", type=Day(), help="Last day [default: today].")
@click.option(
    "--sport", "sports", type=Sport(), multiple=True, help="Only this sport (repeatable)."
)
@click.option("--per-sport", is_flag=True, help="Break every period down by sport.")
@common_options
@pass_app
def summaries(
    app: App,
    athlete: str | None,
    period: str,
    start: dt.date | None,
    end: dt.date | None,
    sports: tuple[common_pb2.SportType.ValueType, ...],
    per_sport: bool,
) -> None:
    """Training totals per week or month, in the athlete's time zone."""
    request = analytics_pb2.GetTrainingSummaryRequest(
        name=f"{athlete_name(athlete)}/trainingSummary",
        period=analytics_pb2.SUMMARY_PERIOD_MONTH
        if period.lower() == "month"
        else analytics_pb2.SUMMARY_PERIOD_WEEK,
        sport_types=list(sports),
        per_sport=per_sport,
    )
    if start:
        request.start_date.CopyFrom(_date(start))
    if end:
        request.end_date.CopyFrom(_date(end))
    connection = app.connection
    summary = connection.analytics.GetTrainingSummary(request, metadata=connection.metadata)
    output = app.output
    if output.as_json:
        output.message(summary)
        return
    rows: list[list[str]] = []
    for item in summary.periods:
        totals = item.totals
        rows.append(
            [
                date(item.start_date),
                date(item.end_date),
                "all",
                str(totals.activity_count),
                kilometres(totals.distance_meters),
                duration(totals.moving_time),
                number(totals.elevation_gain_meters, 0),
                number(totals.training_load, 0),
            ]
        )
        for sport in item.sports:
            rows.append(
                [
                    "",
                    "",
                    sport_label(sport.sport_type),
                    str(sport.totals.activity_count),
                    kilometres(sport.totals.distance_meters),
                    duration(sport.totals.moving_time),
                    number(sport.totals.elevation_gain_meters, 0),
                    number(sport.totals.training_load, 0),
                ]
            )
    output.table(
        ["from", "to", "sport", "activities", "distance", "moving time", "elevation m", "load"],
        rows,
        title=f"Training per {period.lower()} ({summary.time_zone})",
    )


DISTANCE_CHOICES = [
    n.removeprefix("BEST_EFFORT_DISTANCE_").lower().replace("_", "-")
    for n in enum_names(analytics_pb2.BestEffortDistance.DESCRIPTOR)
]


@click.command(name="records")
@athlete_option
@click.option("--year", type=int, help="Best efforts of this year [default: all time].")
@click.option(
    "--distance",
    "distances",
    type=click.Choice(DISTANCE_CHOICES, case_sensitive=False),
    multiple=True,
    help="Only this distance (repeatable).",
)
@click.option(
    "--sport", "sports", type=Sport(), multiple=True, help="Only this sport (repeatable)."
)
@limit_option
@page_size_option
@common_options
@pass_app
def records(
    app: App,
    athlete: str | None,
    year: int | None,
    distances: tuple[str, ...],
    sports: tuple[common_pb2.SportType.ValueType, ...],
    limit: int,
    page_size: int | None,
) -> None:
    """Personal records (best efforts over standard distances), with age grades."""
    request = analytics_pb2.ListPersonalRecordsRequest(
        parent=athlete_name(athlete),
        distances=[
            analytics_pb2.BestEffortDistance.Value(
                "BEST_EFFORT_DISTANCE_" + d.upper().replace("-", "_")
            )
            for d in distances
        ],
        sport_types=list(sports),
    )
    if year is not None:
        request.period = analytics_pb2.RECORD_PERIOD_YEAR
        request.year = year
    connection = app.connection

    def fetch(size: int, token: str) -> analytics_pb2.ListPersonalRecordsResponse:
        request.page_size, request.page_token = size, token
        return connection.analytics.ListPersonalRecords(request, metadata=connection.metadata)

    found, token = collect(fetch, lambda page: list(page.personal_records), limit, page_size)
    output = app.output
    if output.as_json:
        output.json({"personal_records": [to_dict(r) for r in found], "next_page_token": token})
        return
    output.table(
        ["distance", "time", "pace", "date", "sport", "age grade", "activity"],
        (
            [
                enum_label(
                    analytics_pb2.BestEffortDistance.Name(r.distance), "BEST_EFFORT_DISTANCE_"
                ),
                duration(r.time),
                pace(r.distance_meters, r.time),
                r.start_time.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d"),
                sport_label(r.sport_type),
                f"{r.age_grade.age_graded_percent:.1f} %" if r.HasField("age_grade") else "",
                short_id(r.activity),
            ]
            for r in found
        ),
        title=f"Personal records ({year})" if year is not None else "Personal records",
    )


@click.command(name="age-grade")
@click.argument("activity", required=False)
@athlete_option
@click.option("--distance", type=Distance(), help="Distance: 5k, 10km, half, marathon, 800m…")
@click.option("--time", "time_seconds", type=Time(), help="Finish time: H:MM:SS or MM:SS.")
@click.option("--age", type=click.IntRange(min=1, max=120), help="Age (instead of an athlete).")
@click.option("--sex", type=click.Choice(["female", "male"], case_sensitive=False))
@click.option("--date", "on", type=Day(), help="Day of the performance (athlete's age then).")
@common_options
@pass_app
def age_grade(
    app: App,
    activity: str | None,
    athlete: str | None,
    distance: float | None,
    time_seconds: float | None,
    age: int | None,
    sex: str | None,
    on: dt.date | None,
) -> None:
    """Age-grade an ACTIVITY, or a --distance and --time for --age and --sex (or for
    --athlete, whose birth date and sex are used).

    \b
    stride age-grade athletes/ID/activities/AID
    stride age-grade --distance 10k --time 41:30 --age 52 --sex female
    stride age-grade --athlete ID --distance half --time 1:32:10 --date 2026-10-04"""
    request = analytics_pb2.AgeGradeRequest()
    if activity:
        if distance or time_seconds or age or sex:
            raise click.UsageError("give either an ACTIVITY or --distance/--time, not both")
        request.activity = child_name(activity, "activities", athlete)
    else:
        if distance is None or time_seconds is None:
            raise click.UsageError("give an ACTIVITY, or both --distance and --time")
        performance = analytics_pb2.Performance(
            distance_meters=distance, time=_duration(time_seconds)
        )
        if age is not None or sex is not None:
            if age is None or sex is None:
                raise click.UsageError("--age and --sex go together")
            request.age_sex_performance.CopyFrom(
                analytics_pb2.AgeSexPerformance(
                    age=age,
                    sex=sex_value(sex),
                    performance=performance,
                )
            )
        else:
            subject = analytics_pb2.AthletePerformance(
                athlete=athlete_name(athlete), performance=performance
            )
            if on:
                subject.date.CopyFrom(_date(on))
            request.athlete_performance.CopyFrom(subject)
    connection = app.connection
    result = connection.analytics.AgeGrade(request, metadata=connection.metadata)
    output = app.output
    if output.as_json:
        output.message(result)
        return
    output.fields(
        [
            ("age grade", f"{result.age_graded_percent:.2f} %"),
            ("age-graded time", duration(result.age_graded_time)),
            ("open-class standard", duration(result.open_class_standard)),
            ("age factor", f"{result.age_factor:.4f}"),
            ("age", str(result.age)),
            ("sex", enum_label(common_pb2.Sex.Name(result.sex), "SEX_")),
            ("distance", kilometres(result.distance_meters)),
            ("time", duration(result.time)),
            ("standards", result.standards),
        ]
    )

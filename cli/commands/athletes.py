"""`stride athletes list|get|create`."""

from __future__ import annotations

import datetime as dt

import click
from google.type import date_pb2
from stride.v1 import athlete_pb2, common_pb2

from cli.app import App, common_options, pass_app
from cli.connection import athlete_name
from cli.output import Output, date, enum_label, timestamp, to_dict
from cli.pages import collect, limit_option, page_size_option
from cli.params import Day, local_time_zone, sex_value


@click.group(name="athletes")
def group() -> None:
    """List, show and create athletes (list and create need the admin token)."""


def show_athlete(output: Output, athlete: athlete_pb2.Athlete) -> None:
    if output.as_json:
        output.message(athlete)
        return
    output.fields(
        [
            ("name", athlete.name),
            ("display name", athlete.display_name),
            ("time zone", athlete.time_zone),
            ("birth date", date(athlete.birth_date)),
            ("sex", enum_label(common_pb2.Sex.Name(athlete.sex), "SEX_")),
            ("weight", f"{athlete.weight_kg:g} kg" if athlete.HasField("weight_kg") else ""),
            (
                "max heart rate",
                f"{athlete.max_heart_rate_bpm} bpm"
                if athlete.HasField("max_heart_rate_bpm")
                else "",
            ),
            (
                "resting heart rate",
                f"{athlete.resting_heart_rate_bpm} bpm"
                if athlete.HasField("resting_heart_rate_bpm")
                else "",
            ),
            (
                "strava",
                enum_label(
                    athlete_pb2.StravaConnectionState.Name(athlete.strava_connection_state),
                    "STRAVA_CONNECTION_STATE_",
                ),
            ),
            ("created", timestamp(athlete.create_time)),
        ]
    )


@group.command(name="list")
@common_options
@limit_option
@page_size_option
@pass_app
def list_athletes(app: App, limit: int, page_size: int | None) -> None:
    """List athletes."""
    connection = app.connection
    found, token = collect(
        lambda size, page: connection.athletes.ListAthletes(
            athlete_pb2.ListAthletesRequest(page_size=size, page_token=page),
            metadata=connection.metadata,
        ),
        lambda page: list(page.athletes),
        limit,
        page_size,
    )
    output = app.output
    if output.as_json:
        output.json({"athletes": [to_dict(a) for a in found], "next_page_token": token})
        return
    output.table(
        ["id", "display name", "time zone", "birth date", "created"],
        (
            [
                a.name.removeprefix("athletes/"),
                a.display_name,
                a.time_zone,
                date(a.birth_date),
                timestamp(a.create_time),
            ]
            for a in found
        ),
        title="Athletes",
    )
    if token:
        output.notice("more athletes: raise --limit (0 for all)")


@group.command(name="get")
@click.argument("athlete", required=False, envvar="STRIDE_CLI_ATHLETE")
@common_options
@pass_app
def get_athlete(app: App, athlete: str | None) -> None:
    """Show ATHLETE (an id or athletes/ID; default STRIDE_CLI_ATHLETE)."""
    connection = app.connection
    found = connection.athletes.GetAthlete(
        athlete_pb2.GetAthleteRequest(name=athlete_name(athlete)), metadata=connection.metadata
    )
    show_athlete(app.output, found)


@group.command(name="create")
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option(
    "--time-zone",
    default=None,
    help="IANA time zone, such as Europe/Berlin [default: this machine's].",
)
@click.option("--birth-date", type=Day(), help="Birth date (age grading needs it).")
@click.option("--sex", type=click.Choice(["female", "male"], case_sensitive=False))
@click.option("--weight", "weight_kg", type=float, help="Weight in kg.")
@click.option("--max-hr", type=int, help="Maximum heart rate (bpm).")
@click.option("--resting-hr", type=int, help="Resting heart rate (bpm).")
@click.option("--request-id", help="Makes a retried create return the first one's athlete.")
@common_options
@pass_app
def create_athlete(
    app: App,
    display_name: str,
    time_zone: str | None,
    birth_date: dt.date | None,
    sex: str | None,
    weight_kg: float | None,
    max_hr: int | None,
    resting_hr: int | None,
    request_id: str | None,
) -> None:
    """Create an athlete (admin token)."""
    athlete = athlete_pb2.Athlete(
        display_name=display_name, time_zone=time_zone or local_time_zone()
    )
    if birth_date:
        athlete.birth_date.CopyFrom(
            date_pb2.Date(year=birth_date.year, month=birth_date.month, day=birth_date.day)
        )
    if sex:
        athlete.sex = sex_value(sex)
    if weight_kg is not None:
        athlete.weight_kg = weight_kg
    if max_hr is not None:
        athlete.max_heart_rate_bpm = max_hr
    if resting_hr is not None:
        athlete.resting_heart_rate_bpm = resting_hr
    connection = app.connection
    created = connection.athletes.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(athlete=athlete, request_id=request_id or ""),
        metadata=connection.metadata,
    )
    show_athlete(app.output, created)

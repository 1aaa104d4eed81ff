"""GetTrainingSummary through the real server, on PostgreSQL and SQLite (the same expected
answers on both): local ISO weeks and months across daylight-saving changes and in zones
whose week boundary is not UTC's, empty periods, the per-sport breakdown and filter,
defaults, limits and who may ask."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.type import date_pb2
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    analytics_pb2,
    analytics_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
    common_pb2,
)

from tests.support import ServerThread, channel_as, violations

Stub = analytics_pb2_grpc.AnalyticsServiceStub
RUN, RIDE, SWIM = common_pb2.SPORT_TYPE_RUN, common_pb2.SPORT_TYPE_RIDE, common_pb2.SPORT_TYPE_SWIM
WEEK, MONTH = analytics_pb2.SUMMARY_PERIOD_WEEK, analytics_pb2.SUMMARY_PERIOD_MONTH
# TRIMP of an hour's moving time without heart rate (HRr 0.5, men's constants).
ESTIMATED_HOUR = 60 * 0.5 * 0.64 * math.exp(1.92 * 0.5)


def athlete(channel: grpc.Channel, zone: str) -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    created = stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Summed", time_zone=zone)
        )
    )
    return str(created.name)


def local(zone: str, *fields: int) -> dt.datetime:
    year, month, day, hour, minute = fields
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone))


def add(
    channel: grpc.Channel,
    parent: str,
    start: dt.datetime,
    sport: common_pb2.SportType.ValueType = RUN,
    *,
    distance: float = 10_000.0,
    moving_seconds: int = 3600,
    elevation: float = 100.0,
    heart_rate: float | None = None,
) -> None:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(start.astimezone(dt.UTC))
    activity = activity_pb2.Activity(
        title="Session",
        sport_type=sport,
        start_time=stamp,
        elapsed_time=duration_pb2.Duration(seconds=moving_seconds + 60),
        moving_time=duration_pb2.Duration(seconds=moving_seconds),
        distance_meters=distance,
        total_elevation_gain_meters=elevation,
    )
    if heart_rate is not None:
        activity.average_heart_rate_bpm = heart_rate
    activity_pb2_grpc.ActivityServiceStub(channel).CreateActivity(
        activity_pb2.CreateActivityRequest(parent=parent, activity=activity)
    )


def date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def summary(
    channel: grpc.Channel,
    parent: str,
    start: dt.date | None,
    end: dt.date | None,
    **fields: object,
) -> analytics_pb2.TrainingSummary:
    request = analytics_pb2.GetTrainingSummaryRequest(
        name=f"{parent}/trainingSummary",
        **fields,  # type: ignore[arg-type]
    )
    if start is not None:
        request.start_date.CopyFrom(date(start))
    if end is not None:
        request.end_date.CopyFrom(date(end))
    return Stub(channel).GetTrainingSummary(request)


def as_date(value: date_pb2.Date) -> dt.date:
    return dt.date(value.year, value.month, value.day)


def counts(result: analytics_pb2.TrainingSummary) -> dict[dt.date, int]:
    return {as_date(p.start_date): p.totals.activity_count for p in result.periods}


def test_weeks_follow_local_time_across_both_daylight_saving_changes(
    channel: grpc.Channel,
) -> None:
    zone = "Europe/Oslo"
    parent = athlete(channel, zone)
    # Spring forward (2025-03-30 02:00 -> 03:00): Monday 00:30 CEST is Sunday 22:30 UTC,
    # and would still be Sunday at the winter offset.
    add(channel, parent, local(zone, 2025, 3, 31, 0, 30))
    add(channel, parent, local(zone, 2025, 3, 30, 23, 30))
    add(channel, parent, local(zone, 2025, 3, 30, 1, 30))  # just before the change
    # Fall back (2025-10-26 03:00 -> 02:00): Monday 00:30 CEST the week before is Sunday
    # 22:30 UTC (Sunday 23:30 at the winter offset); Monday 00:30 CET after is Sunday 23:30
    # UTC.
    add(channel, parent, local(zone, 2025, 10, 20, 0, 30))
    add(channel, parent, local(zone, 2025, 10, 26, 23, 30))
    add(channel, parent, local(zone, 2025, 10, 27, 0, 30))

    spring = summary(channel, parent, dt.date(2025, 3, 19), dt.date(2025, 4, 2))
    assert spring.time_zone == zone
    assert spring.period == WEEK
    assert as_date(spring.start_date) == dt.date(2025, 3, 17)  # widened to Monday
    assert as_date(spring.end_date) == dt.date(2025, 4, 6)  # and to Sunday
    assert counts(spring) == {
        dt.date(2025, 3, 17): 0,
        dt.date(2025, 3, 24): 2,
        dt.date(2025, 3, 31): 1,
    }
    assert [as_date(p.end_date) for p in spring.periods] == [
        dt.date(2025, 3, 23),
        dt.date(2025, 3, 30),
        dt.date(2025, 4, 6),
    ]

    autumn = summary(channel, parent, dt.date(2025, 10, 13), dt.date(2025, 11, 2))
    assert counts(autumn) == {
        dt.date(2025, 10, 13): 0,
        dt.date(2025, 10, 20): 2,
        dt.date(2025, 10, 27): 1,
    }
    # One range over both changes gives the same buckets.
    year = summary(channel, parent, dt.date(2025, 3, 1), dt.date(2025, 11, 30))
    assert sum(counts(year).values()) == 6
    assert counts(year)[dt.date(2025, 3, 31)] == 1
    assert counts(year)[dt.date(2025, 10, 27)] == 1
    assert len(year.periods) == len({as_date(p.start_date) for p in year.periods})


@pytest.mark.parametrize(
    ("zone", "start", "week"),
    [
        # Sunday 23:30 local is Monday 06:30 UTC: the local (previous) week.
        ("America/Los_Angeles", (2025, 6, 15, 23, 30), dt.date(2025, 6, 9)),
        # Monday 00:30 local is Sunday 12:30 UTC: the local (next) week.
        ("Pacific/Auckland", (2025, 6, 16, 0, 30), dt.date(2025, 6, 16)),
        # A legacy tz name PostgreSQL would read as a fixed-offset abbreviation: summer
        # Monday 00:30 CEST (Sunday 22:30 UTC) is still Monday's week.
        ("CET", (2025, 6, 16, 0, 30), dt.date(2025, 6, 16)),
    ],
)
def test_an_activity_belongs_to_its_local_week_not_the_utc_one(
    channel: grpc.Channel, zone: str, start: tuple[int, ...], week: dt.date
) -> None:
    parent = athlete(channel, zone)
    add(channel, parent, local(zone, *start))
    result = summary(channel, parent, dt.date(2025, 6, 2), dt.date(2025, 6, 29))
    assert {day for day, count in counts(result).items() if count} == {week}
    assert len(result.periods) == 4


def test_months_are_local_and_empty_ones_are_included(channel: grpc.Channel) -> None:
    zone = "America/Los_Angeles"
    parent = athlete(channel, zone)
    # 22:00 on 31 May local is 05:00 on 1 June UTC: May.
    add(channel, parent, local(zone, 2025, 5, 31, 22, 0), distance=5000, elevation=20)
    add(channel, parent, local(zone, 2025, 5, 1, 0, 10), distance=7000, elevation=30)
    add(channel, parent, local(zone, 2025, 6, 1, 0, 10), distance=3000, elevation=5)
    result = summary(channel, parent, dt.date(2025, 4, 15), dt.date(2025, 7, 10), period=MONTH)
    assert result.period == MONTH
    assert (as_date(result.start_date), as_date(result.end_date)) == (
        dt.date(2025, 4, 1),
        dt.date(2025, 7, 31),
    )
    assert [(as_date(p.start_date), as_date(p.end_date)) for p in result.periods] == [
        (dt.date(2025, 4, 1), dt.date(2025, 4, 30)),
        (dt.date(2025, 5, 1), dt.date(2025, 5, 31)),
        (dt.date(2025, 6, 1), dt.date(2025, 6, 30)),
        (dt.date(2025, 7, 1), dt.date(2025, 7, 31)),
    ]
    april, may, june, july = (p.totals for p in result.periods)
    assert april == july == analytics_pb2.TrainingTotals(moving_time=duration_pb2.Duration())
    assert (may.activity_count, may.distance_meters, may.elevation_gain_meters) == (2, 12000, 50)
    assert may.moving_time.seconds == 7200
    assert (june.activity_count, june.distance_meters) == (1, 3000)
    # No heart rate anywhere: every load is the estimate, and counted as such.
    assert may.training_load == pytest.approx(2 * ESTIMATED_HOUR, rel=1e-12)
    assert may.estimated_load_count == 2


def test_per_sport_breakdown_and_sport_filter(channel: grpc.Channel) -> None:
    zone = "Europe/Oslo"
    parent = athlete(channel, zone)
    monday = local(zone, 2025, 9, 8, 7, 0)
    add(channel, parent, monday, SWIM, distance=2000, moving_seconds=1800)
    add(channel, parent, monday + dt.timedelta(days=1), RUN, distance=10_000)
    add(channel, parent, monday + dt.timedelta(days=2), RIDE, distance=40_000, heart_rate=150)
    add(channel, parent, monday + dt.timedelta(days=3), RUN, distance=8000)
    day = monday.date()

    both = summary(channel, parent, day, day, per_sport=True)
    (week,) = both.periods
    assert week.totals.activity_count == 4
    assert week.totals.distance_meters == 60_000
    assert week.totals.estimated_load_count == 3
    assert [s.sport_type for s in week.sports] == sorted([RUN, RIDE, SWIM])
    by_sport = {s.sport_type: s.totals for s in week.sports}
    assert (by_sport[RUN].activity_count, by_sport[RUN].distance_meters) == (2, 18_000)
    assert by_sport[SWIM].moving_time.seconds == 1800
    assert by_sport[RIDE].estimated_load_count == 0
    assert week.totals.training_load == pytest.approx(
        sum(s.totals.training_load for s in week.sports), rel=1e-12
    )

    rides = summary(channel, parent, day, day, sport_types=[RIDE])
    (week,) = rides.periods
    assert (week.totals.activity_count, week.totals.distance_meters) == (1, 40_000)
    assert list(week.sports) == []  # no breakdown unless asked for
    assert week.totals.training_load == by_sport[RIDE].training_load


def test_defaults_cover_twelve_periods_up_to_today(channel: grpc.Channel) -> None:
    parent = athlete(channel, "Pacific/Auckland")
    weeks = summary(channel, parent, None, None)
    assert len(weeks.periods) == 12
    starts = [as_date(p.start_date) for p in weeks.periods]
    assert all(day.weekday() == 0 for day in starts)
    assert all(b - a == dt.timedelta(days=7) for a, b in itertools.pairwise(starts))
    months = summary(channel, parent, None, dt.date(2025, 2, 10), period=MONTH)
    assert as_date(months.start_date) == dt.date(2024, 3, 1)
    assert as_date(months.end_date) == dt.date(2025, 2, 28)
    assert len(months.periods) == 12


def test_bad_ranges_and_names_are_invalid_argument(channel: grpc.Channel) -> None:
    parent = athlete(channel, "UTC")
    cases: list[tuple[dt.date | None, dt.date | None, dict[str, object], str]] = [
        (dt.date(2025, 3, 2), dt.date(2025, 3, 1), {}, "end_date"),
        (dt.date(2015, 1, 1), dt.date(2025, 1, 8), {}, "end_date"),  # 3,661 days
        (None, dt.date(9999, 12, 31), {}, "end_date"),  # its week ends after 9999
        (None, None, {"period": 7}, "period"),
        (None, None, {"sport_types": [999]}, "sport_types[0]"),
    ]
    for start, end, fields, field in cases:
        with pytest.raises(grpc.RpcError) as caught:
            summary(channel, parent, start, end, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (start, end, fields)
        assert field in violations(caught.value)
    # The longest range allowed is 3,660 days, both ends included.
    longest = summary(channel, parent, dt.date(2015, 1, 1), dt.date(2025, 1, 7))
    assert as_date(longest.start_date) == dt.date(2014, 12, 29)
    with pytest.raises(grpc.RpcError) as caught:
        Stub(channel).GetTrainingSummary(
            analytics_pb2.GetTrainingSummaryRequest(name=f"{parent}/fitnessTrend")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_athlete_is_not_found_and_others_are_denied(
    server: ServerThread, channel: grpc.Channel
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        summary(channel, "athletes/feedface", None, None)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    mine, theirs = athlete(channel, "UTC"), athlete(channel, "UTC")
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    token = stub.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(parent=mine, access_token=athlete_pb2.AccessToken())
    ).token
    with channel_as(server.address, token) as own:
        assert len(summary(own, mine, None, None).periods) == 12
        for target in (theirs, "athletes/feedface"):
            with pytest.raises(grpc.RpcError) as caught:
                summary(own, target, None, None)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

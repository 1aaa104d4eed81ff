"""GetFitnessTrend through the real server, on PostgreSQL and SQLite: daily loads per local
day from the stored training loads, and the 42/7-day averages over the history before the
range, checked against a loop written here."""

from __future__ import annotations

import datetime as dt
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
ZONE = "Europe/Oslo"
MAX_HR, REST_HR = 190, 50


def _per_minute(hrr: float) -> float:
    return hrr * 0.64 * math.exp(1.92 * hrr)  # men's constants


def _hr_load(heart_rate: float, minutes: float) -> float:
    return minutes * _per_minute((heart_rate - REST_HR) / (MAX_HR - REST_HR))


def _athlete(channel: grpc.Channel) -> str:
    athlete = athlete_pb2.Athlete(
        display_name="Fit",
        time_zone=ZONE,
        sex=common_pb2.SEX_MALE,
        max_heart_rate_bpm=MAX_HR,
        resting_heart_rate_bpm=REST_HR,
    )
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    return str(stub.CreateAthlete(athlete_pb2.CreateAthleteRequest(athlete=athlete)).name)


def _add(
    channel: grpc.Channel, parent: str, start: dt.datetime, minutes: int, hr: float | None
) -> None:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(start.astimezone(dt.UTC))
    activity = activity_pb2.Activity(
        title="Session",
        sport_type=common_pb2.SPORT_TYPE_RUN,
        start_time=stamp,
        elapsed_time=duration_pb2.Duration(seconds=minutes * 60 + 30),
        moving_time=duration_pb2.Duration(seconds=minutes * 60),
        distance_meters=5000,
    )
    if hr is not None:
        activity.average_heart_rate_bpm = hr
    activity_pb2_grpc.ActivityServiceStub(channel).CreateActivity(
        activity_pb2.CreateActivityRequest(parent=parent, activity=activity)
    )


def _at(*fields: int) -> dt.datetime:
    year, month, day, hour, minute = fields
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(ZONE))


def _date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _trend(
    channel: grpc.Channel, parent: str, start: dt.date | None, end: dt.date | None
) -> analytics_pb2.FitnessTrend:
    request = analytics_pb2.GetFitnessTrendRequest(name=f"{parent}/fitnessTrend")
    if start is not None:
        request.start_date.CopyFrom(_date(start))
    if end is not None:
        request.end_date.CopyFrom(_date(end))
    return Stub(channel).GetFitnessTrend(request)


def test_the_trend_matches_an_independent_loop_over_the_whole_history(
    channel: grpc.Channel,
) -> None:
    parent = _athlete(channel)
    estimated = 30 * _per_minute(0.5)
    loads = {
        dt.date(2025, 1, 10): _hr_load(140, 60),  # before the range: counts all the same
        dt.date(2025, 2, 1): _hr_load(150, 60) + estimated,
        dt.date(2025, 2, 3): _hr_load(160, 45),
        dt.date(2025, 2, 4): _hr_load(130, 40),
    }
    _add(channel, parent, _at(2025, 1, 10, 18, 0), 60, 140)
    _add(channel, parent, _at(2025, 2, 1, 8, 0), 60, 150)
    _add(channel, parent, _at(2025, 2, 1, 17, 0), 30, None)
    _add(channel, parent, _at(2025, 2, 3, 23, 30), 45, 160)  # 22:30 UTC: the 3rd
    _add(channel, parent, _at(2025, 2, 4, 0, 30), 40, 130)  # 23:30 UTC on the 3rd: the 4th

    start, end = dt.date(2025, 2, 1), dt.date(2025, 2, 10)
    trend = _trend(channel, parent, start, end)
    assert trend.name == f"{parent}/fitnessTrend"
    assert trend.time_zone == ZONE
    assert (trend.start_date, trend.end_date) == (_date(start), _date(end))
    assert [p.date for p in trend.points] == [
        _date(start + dt.timedelta(days=i)) for i in range(10)
    ]

    chronic = acute = 0.0
    day = dt.date(2025, 1, 10)
    expected = {}
    while day <= end:
        load = loads.get(day, 0.0)
        chronic = chronic + (load - chronic) / 42
        acute = acute + (load - acute) / 7
        expected[day] = (load, chronic, acute)
        day += dt.timedelta(days=1)
    for point in trend.points:
        day = dt.date(point.date.year, point.date.month, point.date.day)
        load, chronic, acute = expected[day]
        assert point.training_load == pytest.approx(load, rel=1e-12, abs=1e-12)
        assert point.chronic_load == pytest.approx(chronic, rel=1e-12)
        assert point.acute_load == pytest.approx(acute, rel=1e-12)
        assert point.balance == pytest.approx(chronic - acute, rel=1e-9, abs=1e-12)
        assert point.estimated_load_count == (1 if day == dt.date(2025, 2, 1) else 0)


def test_defaults_give_ninety_days_up_to_today(channel: grpc.Channel) -> None:
    parent = _athlete(channel)
    trend = _trend(channel, parent, None, None)
    assert len(trend.points) == 90
    today = dt.datetime.now(ZoneInfo(ZONE)).date()
    last = trend.points[-1].date
    assert abs((dt.date(last.year, last.month, last.day) - today).days) <= 1
    assert all(p.training_load == 0 and p.chronic_load == 0 for p in trend.points)
    # Only an end: the 90 days before it.
    end = dt.date(2025, 3, 31)
    trend = _trend(channel, parent, None, end)
    assert trend.start_date == _date(end - dt.timedelta(days=89))


def test_bad_ranges_missing_athletes_and_other_athletes(
    server: ServerThread, channel: grpc.Channel
) -> None:
    parent = _athlete(channel)
    for start, end in [
        (dt.date(2025, 3, 2), dt.date(2025, 3, 1)),
        (dt.date(2015, 1, 1), dt.date(2025, 1, 8)),  # 3,661 days
        (None, dt.date(9999, 12, 31)),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            _trend(channel, parent, start, end)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "end_date" in violations(caught.value)
    assert len(_trend(channel, parent, dt.date(2015, 1, 1), dt.date(2025, 1, 7)).points) == 3660

    with pytest.raises(grpc.RpcError) as caught:
        _trend(channel, "athletes/feedface", None, None)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    other = _athlete(channel)
    token = (
        athlete_pb2_grpc.AthleteServiceStub(channel)
        .CreateAccessToken(
            athlete_pb2.CreateAccessTokenRequest(
                parent=parent, access_token=athlete_pb2.AccessToken()
            )
        )
        .token
    )
    with channel_as(server.address, token) as own:
        assert len(_trend(own, parent, None, None).points) == 90
        with pytest.raises(grpc.RpcError) as caught:
            _trend(own, other, None, None)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

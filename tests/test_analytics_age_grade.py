"""AnalyticsService.AgeGrade through the real server: the three kinds of subject, the
no-grade statuses the contract promises, and who may grade whom."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
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

from tests.support import ServerThread, channel_as, detail, reason

Stub = analytics_pb2_grpc.AnalyticsServiceStub


def _athlete(channel: grpc.Channel, birth: dt.date | None, sex: common_pb2.Sex.ValueType) -> str:
    athlete = athlete_pb2.Athlete(display_name="Runner", time_zone="Europe/Oslo", sex=sex)
    if birth is not None:
        athlete.birth_date.CopyFrom(
            date_pb2.Date(year=birth.year, month=birth.month, day=birth.day)
        )
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    return str(stub.CreateAthlete(athlete_pb2.CreateAthleteRequest(athlete=athlete)).name)


def _token(channel: grpc.Channel, athlete: str) -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    request = athlete_pb2.CreateAccessTokenRequest(
        parent=athlete, access_token=athlete_pb2.AccessToken()
    )
    return str(stub.CreateAccessToken(request).token)


def _activity(
    channel: grpc.Channel, athlete: str, sport: common_pb2.SportType.ValueType, start: dt.datetime
) -> str:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(start)
    activity = activity_pb2.Activity(
        title="10k",
        sport_type=sport,
        start_time=stamp,
        elapsed_time=duration_pb2.Duration(seconds=2400),
        distance_meters=10_000,
    )
    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    created = stub.CreateActivity(
        activity_pb2.CreateActivityRequest(parent=athlete, activity=activity)
    )
    return str(created.name)


def _performance(distance: float = 10_000, seconds: int = 2400) -> analytics_pb2.Performance:
    return analytics_pb2.Performance(
        distance_meters=distance, time=duration_pb2.Duration(seconds=seconds)
    )


def _fails(call: object, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code() == code, caught.value
    return caught.value


def _explicit(
    age: int, sex: common_pb2.Sex.ValueType, performance: analytics_pb2.Performance
) -> analytics_pb2.AgeGradeRequest:
    subject = analytics_pb2.AgeSexPerformance(age=age, sex=sex, performance=performance)
    return analytics_pb2.AgeGradeRequest(age_sex_performance=subject)


def _of(athlete: str, day: dt.date | None = None) -> analytics_pb2.AgeGradeRequest:
    """An athlete's 10 km in 40:00 (on `day`, else today)."""
    subject = analytics_pb2.AthletePerformance(athlete=athlete, performance=_performance())
    if day is not None:
        subject.date.CopyFrom(date_pb2.Date(year=day.year, month=day.month, day=day.day))
    return analytics_pb2.AgeGradeRequest(athlete_performance=subject)


def test_an_explicit_age_and_sex_is_graded_by_the_2025_road_tables(
    server: ServerThread, channel: grpc.Channel
) -> None:
    # A man of 50 running 10 km in 40:00: factor 0.8886 (the published table), graded
    # 2132.64 s, 100 x 1584 / 2132.64 = 74.2741 %.
    result = Stub(channel).AgeGrade(_explicit(50, common_pb2.SEX_MALE, _performance()))
    assert result.age == 50
    assert result.age_factor == pytest.approx(0.8886, abs=1e-12)
    assert result.age_graded_time.ToNanoseconds() == 2_132_640_000_000
    assert result.age_graded_percent == pytest.approx(74.2741, abs=1e-4)
    assert result.open_class_standard.seconds == 1584
    assert result.standards == "road-2025"


def test_what_has_no_grade_is_refused_with_the_field_and_reason(channel: grpc.Channel) -> None:
    stub = Stub(channel)
    cases = [
        (
            _explicit(4, common_pb2.SEX_MALE, _performance()),
            "AGE_NOT_GRADED",
            "age_sex_performance.age",
        ),
        (
            _explicit(50, common_pb2.SEX_UNSPECIFIED, _performance()),
            "SEX_NOT_GRADED",
            "age_sex_performance.sex",
        ),
        (
            _explicit(50, common_pb2.SEX_FEMALE, _performance(distance=1000)),
            "DISTANCE_NOT_GRADED",
            "age_sex_performance.performance.distance_meters",
        ),
    ]
    for request, expected, field in cases:
        error = _fails(
            lambda request=request: stub.AgeGrade(request), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert reason(error) == expected
        violations = detail(error, error_details_pb2.BadRequest).field_violations
        assert [v.field for v in violations] == [field]
    no_time = _explicit(50, common_pb2.SEX_MALE, analytics_pb2.Performance(distance_meters=5000))
    _fails(lambda: stub.AgeGrade(no_time), grpc.StatusCode.INVALID_ARGUMENT)
    _fails(lambda: stub.AgeGrade(analytics_pb2.AgeGradeRequest()), grpc.StatusCode.INVALID_ARGUMENT)


def test_an_athletes_performance_uses_their_age_on_the_day_and_sex(
    server: ServerThread, channel: grpc.Channel
) -> None:
    athlete = _athlete(channel, dt.date(1975, 6, 15), common_pb2.SEX_FEMALE)
    stub = Stub(channel)

    assert stub.AgeGrade(_of(athlete, dt.date(2025, 6, 14))).age == 49
    on_birthday = stub.AgeGrade(_of(athlete, dt.date(2025, 6, 15)))
    assert on_birthday.age == 50
    assert on_birthday.sex == common_pb2.SEX_FEMALE
    assert on_birthday.age_factor == pytest.approx(0.8822, abs=1e-12)  # published: F, 50, 10K
    # The day is in the request: a day that gives no grade is the request's fault.
    for day in (dt.date(1970, 1, 1), dt.date(2080, 1, 1)):
        error = _fails(
            lambda day=day: stub.AgeGrade(_of(athlete, day)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert reason(error) == "AGE_NOT_GRADED"
        violations = detail(error, error_details_pb2.BadRequest).field_violations
        assert [v.field for v in violations] == ["athlete_performance.date"]

    unknown = _athlete(channel, None, common_pb2.SEX_MALE)
    error = _fails(lambda: stub.AgeGrade(_of(unknown)), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(error) == "BIRTH_DATE_MISSING"


def test_an_activity_is_graded_only_when_it_is_a_run(
    server: ServerThread, channel: grpc.Channel
) -> None:
    athlete = _athlete(channel, dt.date(1975, 6, 15), common_pb2.SEX_MALE)
    start = dt.datetime(2025, 6, 14, 23, 30, tzinfo=dt.UTC)  # 15 June in Oslo: 50 that day
    run = _activity(channel, athlete, common_pb2.SPORT_TYPE_RUN, start)
    result = Stub(channel).AgeGrade(analytics_pb2.AgeGradeRequest(activity=run))
    assert (result.age, result.distance_meters, result.time.seconds) == (50, 10_000, 2400)
    assert result.age_factor == pytest.approx(0.8886, abs=1e-12)
    ride = _activity(channel, athlete, common_pb2.SPORT_TYPE_RIDE, start)
    error = _fails(
        lambda: Stub(channel).AgeGrade(analytics_pb2.AgeGradeRequest(activity=ride)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(error) == "SPORT_NOT_GRADED"
    missing = f"{athlete}/activities/nothing-here"
    _fails(
        lambda: Stub(channel).AgeGrade(analytics_pb2.AgeGradeRequest(activity=missing)),
        grpc.StatusCode.NOT_FOUND,
    )


def test_an_athlete_token_grades_only_its_own_athlete_but_anyone_may_grade_an_age(
    server: ServerThread, channel: grpc.Channel
) -> None:
    mine = _athlete(channel, dt.date(1980, 1, 1), common_pb2.SEX_MALE)
    theirs = _athlete(channel, dt.date(1960, 1, 1), common_pb2.SEX_FEMALE)
    their_run = _activity(
        channel, theirs, common_pb2.SPORT_TYPE_RUN, dt.datetime(2025, 1, 5, tzinfo=dt.UTC)
    )
    with channel_as(server.address, _token(channel, mine)) as own:
        stub = Stub(own)
        assert stub.AgeGrade(_explicit(40, common_pb2.SEX_MALE, _performance())).age == 40
        requests = [
            analytics_pb2.AgeGradeRequest(activity=their_run),
            _of(theirs),
            _of("athletes/does-not-exist"),
        ]
        for request in requests:  # whether or not it exists: permission comes first
            error = _fails(
                lambda request=request: stub.AgeGrade(request), grpc.StatusCode.PERMISSION_DENIED
            )
            assert reason(error) == "NOT_YOUR_RESOURCE"
        own_grade = stub.AgeGrade(_of(mine))
        assert own_grade.sex == common_pb2.SEX_MALE


def test_runs_carry_their_age_grade_and_it_follows_the_profile(
    server: ServerThread, channel: grpc.Channel
) -> None:
    athlete = _athlete(channel, None, common_pb2.SEX_MALE)
    start = dt.datetime(2025, 6, 14, 23, 30, tzinfo=dt.UTC)
    run = _activity(channel, athlete, common_pb2.SPORT_TYPE_RUN, start)
    ride = _activity(channel, athlete, common_pb2.SPORT_TYPE_RIDE, start)
    activities = activity_pb2_grpc.ActivityServiceStub(channel)

    def graded(name: str) -> bool:
        return activities.GetActivity(activity_pb2.GetActivityRequest(name=name)).HasField(
            "age_grade"
        )

    assert not graded(run)  # no birth date yet
    athlete_pb2_grpc.AthleteServiceStub(channel).UpdateAthlete(
        athlete_pb2.UpdateAthleteRequest(
            athlete=athlete_pb2.Athlete(
                name=athlete, birth_date=date_pb2.Date(year=1975, month=6, day=15)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["birth_date"]),
        )
    )
    fetched = activities.GetActivity(activity_pb2.GetActivityRequest(name=run))
    assert fetched.age_grade.age == 50  # 15 June in Oslo
    assert fetched.age_grade.age_factor == pytest.approx(0.8886, abs=1e-12)
    assert not graded(ride)
    listed = activities.ListActivities(activity_pb2.ListActivitiesRequest(parent=athlete))
    assert {a.name: a.HasField("age_grade") for a in listed.activities} == {run: True, ride: False}

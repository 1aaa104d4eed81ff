"""Hypothesis-generated requests: always a precise status, never UNKNOWN/INTERNAL, no damage."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, cast

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from google.type import date_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc, common_pb2

from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    channel_as,
    detail,
    make_settings,
    postgres_database,
)

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class World:
    """A server with one athlete and one activity whose stored state must survive bad input."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.athletes = athlete_pb2_grpc.AthleteServiceStub(channel)
        self.activities = activity_pb2_grpc.ActivityServiceStub(channel)
        self.athlete = self.athletes.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name="Keep", time_zone="Europe/Rome")
            )
        )
        self.activity = self.activities.CreateActivity(
            activity_pb2.CreateActivityRequest(
                parent=self.athlete.name,
                activity=activity_pb2.Activity(
                    title="Keep",
                    sport_type=common_pb2.SPORT_TYPE_RUN,
                    start_time=timestamp_pb2.Timestamp(seconds=1_600_000_000),
                    elapsed_time=duration_pb2.Duration(seconds=3600),
                ),
            )
        )

    def snapshot(self) -> tuple[bytes, ...]:
        athletes = self.athletes.ListAthletes(athlete_pb2.ListAthletesRequest(page_size=1000))
        listed = self.activities.ListActivities(
            activity_pb2.ListActivitiesRequest(parent=self.athlete.name, page_size=1000)
        )
        return (
            *(a.SerializeToString(deterministic=True) for a in athletes.athletes),
            *(a.SerializeToString(deterministic=True) for a in listed.activities),
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            template = request.getfixturevalue("postgres_template")
            url = stack.enter_context(postgres_database(template=template))
        data_dir = tmp_path_factory.mktemp("bad-input")
        server = stack.enter_context(ServerThread(make_settings(data_dir, url)))
        channel = stack.enter_context(channel_as(server.address, ADMIN_TOKEN))
        yield World(channel)


texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "Europe/Paris", "UTC", "x" * 10_001, "athletes/", "../etc"]),
    st.text(min_size=190, max_size=260),
    st.text(alphabet="\x00ab/ -", min_size=1, max_size=5),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6).map(float)
)
ints = st.integers(-(2**31), 2**31 - 1)
timestamps = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.integers(-(2**62), 2**62) | st.integers(0, 2_000_000_000),
    nanos=st.integers(-(2**31), 2**31 - 1) | st.just(0),
)
durations = st.builds(
    duration_pb2.Duration,
    seconds=st.integers(-(2**62), 2**62) | st.integers(-10, 10**6),
    nanos=st.integers(-(2**31), 2**31 - 1) | st.just(0),
)
dates = st.builds(
    date_pb2.Date, year=st.integers(0, 10_000), month=st.integers(0, 13), day=st.integers(0, 32)
)
masks = st.builds(
    field_mask_pb2.FieldMask,
    paths=st.lists(
        st.sampled_from(
            [
                "display_name",
                "time_zone",
                "*",
                "name",
                "create_time",
                "title",
                "nope",
                "birth_date",
                "sport_type",
                "distance_meters",
                "weight_kg",
                "visibility",
                "",
            ]
        ),
        max_size=4,
    ),
)


# Each field mixes valid and invalid values, so one bad field often rides with good ones.
zones = st.sampled_from(["UTC", "Europe/Paris", "America/Denver"]) | texts
valid_dates = st.dates(dt.date(1900, 1, 1), dt.date(2020, 1, 1)).map(
    lambda d: date_pb2.Date(year=d.year, month=d.month, day=d.day)
)
valid_times = st.integers(0, 1_750_000_000).map(lambda s: timestamp_pb2.Timestamp(seconds=s))
valid_durations = st.integers(1, 10**5).map(lambda s: duration_pb2.Duration(seconds=s))


small_ints = st.lists(st.integers(-1, 70), max_size=3)
request_ids = st.just("") | st.uuids().map(str) | texts


def optional(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


def athlete_messages(name: st.SearchStrategy[str]) -> st.SearchStrategy[athlete_pb2.Athlete]:
    return st.builds(
        athlete_pb2.Athlete,
        name=name,
        display_name=st.just("Valid") | texts,
        time_zone=zones,
        birth_date=optional(valid_dates | dates),
        sex=st.integers(0, 2) | st.integers(-3, 5),
        weight_kg=optional(st.floats(1, 500) | numbers),
        max_heart_rate_bpm=optional(st.integers(150, 200) | ints),
        resting_heart_rate_bpm=optional(st.integers(30, 60) | ints),
    )


def activity_messages(name: st.SearchStrategy[str]) -> st.SearchStrategy[activity_pb2.Activity]:
    return st.builds(
        activity_pb2.Activity,
        name=name,
        title=st.just("Valid") | texts,
        description=texts,
        sport_type=st.integers(1, 50) | st.integers(-2, 60),
        start_time=optional(valid_times | timestamps),
        time_zone=st.just("") | zones,
        elapsed_time=optional(valid_durations | durations),
        moving_time=optional(durations),
        distance_meters=st.floats(0, 10**6) | numbers,
        total_elevation_gain_meters=st.floats(0, 1000) | numbers,
        average_heart_rate_bpm=optional(st.floats(60, 200) | numbers),
        visibility=st.integers(0, 3) | st.integers(-1, 5),
    )


def _call(world: World, rpc: Callable[[Any], Any], request: Message) -> None:
    before = world.snapshot()
    try:
        rpc(request)
        return
    except grpc.RpcError as error:
        code = cast(grpc.Call, error).code()
        assert code in ALLOWED, f"{code} for {request}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            bad_request = detail(error, error_details_pb2.BadRequest)
            assert bad_request.field_violations
            assert all(v.field and v.description for v in bad_request.field_violations)
    assert world.snapshot() == before


@EXAMPLES
@given(data=st.data())
def test_athlete_requests(world: World, data: st.DataObject) -> None:
    name = st.one_of(texts, st.just(world.athlete.name))
    choice = data.draw(st.sampled_from(["create", "update", "get", "list"]))
    if choice == "create":
        request: Message = athlete_pb2.CreateAthleteRequest(
            athlete=data.draw(athlete_messages(name)), request_id=data.draw(request_ids)
        )
        _call(world, world.athletes.CreateAthlete, request)
    elif choice == "update":
        request = athlete_pb2.UpdateAthleteRequest(
            athlete=data.draw(athlete_messages(name)), update_mask=data.draw(masks)
        )
        _call(world, world.athletes.UpdateAthlete, request)
    elif choice == "get":
        _call(world, world.athletes.GetAthlete, athlete_pb2.GetAthleteRequest(name=data.draw(name)))
    else:
        request = athlete_pb2.ListAthletesRequest(
            page_size=data.draw(ints), page_token=data.draw(texts)
        )
        _call(world, world.athletes.ListAthletes, request)


@EXAMPLES
@given(data=st.data())
def test_activity_requests(world: World, data: st.DataObject) -> None:
    parent = st.one_of(texts, st.just(world.athlete.name))
    name = st.one_of(texts, st.just(world.activity.name))
    choice = data.draw(st.sampled_from(["create", "update", "list", "stream"]))
    if choice == "create":
        request: Message = activity_pb2.CreateActivityRequest(
            parent=data.draw(parent),
            activity=data.draw(activity_messages(name)),
            request_id=data.draw(request_ids),
        )
        _call(world, world.activities.CreateActivity, request)
    elif choice == "update":
        request = activity_pb2.UpdateActivityRequest(
            activity=data.draw(activity_messages(name)), update_mask=data.draw(masks)
        )
        _call(world, world.activities.UpdateActivity, request)
    elif choice == "list":
        request = activity_pb2.ListActivitiesRequest(
            parent=data.draw(parent),
            page_size=data.draw(ints),
            page_token=data.draw(texts),
            start_time_from=data.draw(timestamps),
            sport_types=[common_pb2.SportType.ValueType(v) for v in data.draw(small_ints)],
        )
        _call(world, world.activities.ListActivities, request)
    else:
        request = activity_pb2.StreamActivitySamplesRequest(
            name=data.draw(name),
            chunk_size=data.draw(ints),
            channels=[activity_pb2.SampleChannel.ValueType(v) for v in data.draw(small_ints)],
        )
        _call(world, lambda r: list(world.activities.StreamActivitySamples(r)), request)

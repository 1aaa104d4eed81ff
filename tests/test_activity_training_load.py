"""Every activity written keeps its training load (TRIMP, see AnalyticsService): manual ones
from their average heart rate or the estimate, synced ones from their heart-rate samples.
The expected values are Banister's formula written out here, not the domain code."""

from __future__ import annotations

import datetime as dt
import math

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc, common_pb2

from domain.activities import ActivityEdit, Measurements, Sample, Source
from domain.training_load import Load
from services.activities import ExternalActivities
from storage.repositories.activities import ActivityRepository
from tests.support import ServerThread

START = dt.datetime(2025, 6, 3, 6, 0, tzinfo=dt.UTC)
MAX_HR, REST_HR = 190, 50


def _trimp_per_minute(hr: float) -> float:
    """Men's constants (the athlete's sex is male)."""
    hrr = (hr - REST_HR) / (MAX_HR - REST_HR)
    return hrr * 0.64 * math.exp(1.92 * hrr)


def _athlete(channel: grpc.Channel) -> str:
    athlete = athlete_pb2.Athlete(
        display_name="Loaded",
        time_zone="Europe/Oslo",
        sex=common_pb2.SEX_MALE,
        max_heart_rate_bpm=MAX_HR,
        resting_heart_rate_bpm=REST_HR,
    )
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    return str(stub.CreateAthlete(athlete_pb2.CreateAthleteRequest(athlete=athlete)).name)


def _manual(channel: grpc.Channel, athlete: str, **fields: object) -> str:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(START)
    activity = activity_pb2.Activity(
        title="Easy",
        sport_type=common_pb2.SPORT_TYPE_RUN,
        start_time=stamp,
        elapsed_time=duration_pb2.Duration(seconds=4000),
        moving_time=duration_pb2.Duration(seconds=3600),
        distance_meters=10_000,
        **fields,  # type: ignore[arg-type]
    )
    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    request = activity_pb2.CreateActivityRequest(parent=athlete, activity=activity)
    return str(stub.CreateActivity(request).name).rsplit("/", 1)[1]


def _stored(server: ServerThread, activity_id: str) -> Load | None:
    assert server.running is not None
    with server.running.database.read_primary() as session:
        return ActivityRepository(session).training_load(activity_id)


def test_a_manual_activity_with_average_heart_rate_gets_its_load(
    server: ServerThread, channel: grpc.Channel
) -> None:
    athlete = _athlete(channel)
    activity = _manual(channel, athlete, average_heart_rate_bpm=150.0)
    load = _stored(server, activity)
    assert load is not None
    assert not load.estimated
    assert math.isclose(load.value, 60 * _trimp_per_minute(150), rel_tol=1e-12)


def test_a_manual_activity_without_heart_rate_is_estimated(
    server: ServerThread, channel: grpc.Channel
) -> None:
    athlete = _athlete(channel)
    activity = _manual(channel, athlete)
    load = _stored(server, activity)
    assert load is not None
    assert load.estimated
    # HRr 0.5 over the moving time.
    assert math.isclose(load.value, 60 * 0.5 * 0.64 * math.exp(0.96), rel_tol=1e-12)


def _samples(heart_rate: int, count: int) -> list[Sample]:
    return [
        Sample(time=START + dt.timedelta(seconds=10 * i), heart_rate_bpm=heart_rate)
        for i in range(count)
    ]


def test_a_synced_activity_takes_its_samples_trimp_also_when_rewritten_without_them(
    server: ServerThread, channel: grpc.Channel
) -> None:
    assert server.running is not None
    athlete_id = _athlete(channel).split("/")[1]
    external = ExternalActivities(server.running.database, Source.STRAVA)
    edit = ActivityEdit(title="Tempo", sport_type="Run")
    # The average says 120, the samples 160: the samples win.
    measurements = Measurements(
        start_time=START,
        elapsed=dt.timedelta(minutes=30),
        moving=dt.timedelta(minutes=30),
        average_heart_rate_bpm=120.0,
    )
    activity, created, written = external.write(
        athlete_id, "s-1", edit, measurements, {}, _samples(160, 181), "job-1"
    )
    assert created
    assert written == 181
    # 180 intervals of 10 s at 160 bpm.
    expected = 180 * (10 / 60) * _trimp_per_minute(160)
    load = _stored(server, activity.id)
    assert load is not None
    assert not load.estimated
    assert math.isclose(load.value, expected, rel_tol=1e-12)

    # Written again without samples (a webhook update): the stored samples still count.
    again, created, _ = external.write(athlete_id, "s-1", edit, measurements, {}, None, "job-2")
    assert not created
    assert again.id == activity.id
    load = _stored(server, activity.id)
    assert load is not None
    assert math.isclose(load.value, expected, rel_tol=1e-12)

    # Samples without heart rate: the average heart rate over the moving time.
    no_hr = [Sample(time=s.time, distance_meters=3.0) for s in _samples(160, 181)]
    external.write(athlete_id, "s-1", edit, measurements, {}, no_hr, "job-3")
    load = _stored(server, activity.id)
    assert load is not None
    assert not load.estimated
    assert math.isclose(load.value, 30 * _trimp_per_minute(120), rel_tol=1e-12)

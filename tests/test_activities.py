"""ActivityService through a real server, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc, common_pb2

from domain.activities import ActivityEdit, Measurements, Sample, Source
from domain.metrics import summarize
from services.activities import ExternalActivities
from storage.database import Database
from storage.repositories.activities import ActivityRepository
from tests.support import ServerThread, seed_activity_with_samples, violations

Stub = activity_pb2_grpc.ActivityServiceStub
START = dt.datetime(2025, 3, 2, 6, 30, tzinfo=dt.UTC)


@pytest.fixture
def athlete(athletes: athlete_pb2_grpc.AthleteServiceStub) -> str:
    created = athletes.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Runner", time_zone="America/Denver")
        )
    )
    return created.name


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


def _activity(**fields: object) -> activity_pb2.Activity:
    values: dict[str, object] = {
        "title": "Long run",
        "sport_type": common_pb2.SPORT_TYPE_RUN,
        "start_time": _ts(START),
        "elapsed_time": duration_pb2.Duration(seconds=5400),
        "moving_time": duration_pb2.Duration(seconds=5300),
        "distance_meters": 18_250.5,
        "total_elevation_gain_meters": 210,
        "average_heart_rate_bpm": 141.5,
    }
    values.update(fields)
    return activity_pb2.Activity(**values)  # type: ignore[arg-type]


def _create(stub: Stub, parent: str, **fields: object) -> activity_pb2.Activity:
    return stub.CreateActivity(
        activity_pb2.CreateActivityRequest(parent=parent, activity=_activity(**fields))
    )


def test_create_manual_activity_round_trips(activities: Stub, athlete: str) -> None:
    created = _create(activities, athlete)
    assert created.name.startswith(f"{athlete}/activities/")
    assert created.source == activity_pb2.ACTIVITY_SOURCE_MANUAL
    assert created.time_zone == "America/Denver"  # the athlete's, as none was given
    assert created.visibility == activity_pb2.VISIBILITY_EVERYONE
    assert created.distance_meters == 18_250.5
    assert created.moving_time.seconds == 5300
    assert created.average_heart_rate_bpm == 141.5
    assert not created.HasField("max_heart_rate_bpm")
    assert created.sample_count == 0
    assert activities.GetActivity(activity_pb2.GetActivityRequest(name=created.name)) == created


def test_create_with_request_id_is_idempotent(activities: Stub, athlete: str) -> None:
    request = activity_pb2.CreateActivityRequest(
        parent=athlete, activity=_activity(), request_id=str(uuid.uuid4())
    )
    first = activities.CreateActivity(request)
    assert activities.CreateActivity(request) == first
    listed = activities.ListActivities(activity_pb2.ListActivitiesRequest(parent=athlete))
    assert [a.name for a in listed.activities] == [first.name]


def test_create_under_missing_athlete_is_not_found(activities: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _create(activities, "athletes/feedface")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"distance_meters": -1.0}, "activity.distance_meters"),
        ({"distance_meters": float("inf")}, "activity.distance_meters"),
        ({"title": ""}, "activity.title"),
        ({"title": "t" * 201}, "activity.title"),
        ({"description": "d" * 10_001}, "activity.description"),
        ({"sport_type": common_pb2.SPORT_TYPE_UNSPECIFIED}, "activity.sport_type"),
        ({"sport_type": 999}, "activity.sport_type"),
        ({"time_zone": "Europe/Atlantis"}, "activity.time_zone"),
        ({"elapsed_time": duration_pb2.Duration(seconds=0)}, "activity.elapsed_time"),
        ({"elapsed_time": duration_pb2.Duration(seconds=-5)}, "activity.elapsed_time"),
        ({"moving_time": duration_pb2.Duration(seconds=9999)}, "activity.moving_time"),
        ({"start_time": timestamp_pb2.Timestamp(seconds=-10)}, "activity.start_time"),
        ({"start_time": timestamp_pb2.Timestamp(seconds=10**12)}, "activity.start_time"),
        ({"average_heart_rate_bpm": 900.0}, "activity.average_heart_rate_bpm"),
        ({"visibility": 42}, "activity.visibility"),
    ],
)
def test_create_rejects_bad_fields_by_name(
    activities: Stub, athlete: str, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _create(activities, athlete, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == [field]
    listed = activities.ListActivities(activity_pb2.ListActivitiesRequest(parent=athlete))
    assert list(listed.activities) == []


def test_create_reports_every_violation_at_once(activities: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        activities.CreateActivity(
            activity_pb2.CreateActivityRequest(parent="nope", activity=activity_pb2.Activity())
        )
    assert set(violations(caught.value)) == {
        "parent",
        "activity.title",
        "activity.sport_type",
        "activity.start_time",
        "activity.elapsed_time",
    }


def test_update_changes_editable_fields_only(activities: Stub, athlete: str) -> None:
    created = _create(activities, athlete)
    updated = activities.UpdateActivity(
        activity_pb2.UpdateActivityRequest(
            activity=activity_pb2.Activity(
                name=created.name,
                title="Long run by the river",
                sport_type=common_pb2.SPORT_TYPE_TRAIL_RUN,
                visibility=activity_pb2.VISIBILITY_ONLY_ME,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["title", "sport_type", "visibility"]),
        )
    )
    assert updated.title == "Long run by the river"
    assert updated.sport_type == common_pb2.SPORT_TYPE_TRAIL_RUN
    assert updated.visibility == activity_pb2.VISIBILITY_ONLY_ME
    assert updated.distance_meters == created.distance_meters


def test_update_rejects_immutable_paths(activities: Stub, athlete: str) -> None:
    created = _create(activities, athlete)
    with pytest.raises(grpc.RpcError) as caught:
        activities.UpdateActivity(
            activity_pb2.UpdateActivityRequest(
                activity=activity_pb2.Activity(name=created.name, distance_meters=1.0),
                update_mask=field_mask_pb2.FieldMask(paths=["distance_meters"]),
            )
        )
    assert violations(caught.value) == {
        "update_mask.paths": "'distance_meters' cannot be changed after creation"
    }
    assert activities.GetActivity(activity_pb2.GetActivityRequest(name=created.name)) == created


def test_update_without_mask_ignores_immutable_fields_of_a_fetched_copy(
    activities: Stub, athlete: str
) -> None:
    created = _create(activities, athlete)
    edited = activity_pb2.Activity()
    edited.CopyFrom(created)
    edited.description = "felt good"
    edited.distance_meters = 1.0
    updated = activities.UpdateActivity(activity_pb2.UpdateActivityRequest(activity=edited))
    assert updated.description == "felt good"
    assert updated.distance_meters == created.distance_meters


def test_activity_of_another_athlete_is_not_found(
    activities: Stub, athlete: str, athletes: athlete_pb2_grpc.AthleteServiceStub
) -> None:
    created = _create(activities, athlete)
    other = athletes.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Other", time_zone="UTC")
        )
    )
    foreign = created.name.replace(athlete, other.name)
    with pytest.raises(grpc.RpcError) as caught:
        activities.GetActivity(activity_pb2.GetActivityRequest(name=foreign))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_delete_then_get_is_not_found(activities: Stub, athlete: str) -> None:
    created = _create(activities, athlete)
    activities.DeleteActivity(activity_pb2.DeleteActivityRequest(name=created.name))
    with pytest.raises(grpc.RpcError) as caught:
        activities.DeleteActivity(activity_pb2.DeleteActivityRequest(name=created.name))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_filters_by_time_range_and_sport_and_orders(activities: Stub, athlete: str) -> None:
    sports = [common_pb2.SPORT_TYPE_RUN, common_pb2.SPORT_TYPE_RIDE, common_pb2.SPORT_TYPE_SWIM]
    made = [
        _create(
            activities,
            athlete,
            start_time=_ts(START + dt.timedelta(days=i)),
            sport_type=sports[i % 3],
        )
        for i in range(9)
    ]

    def names(**filters: object) -> list[str]:
        request = activity_pb2.ListActivitiesRequest(parent=athlete, **filters)  # type: ignore[arg-type]
        return [a.name for a in activities.ListActivities(request).activities]

    assert names() == [a.name for a in made]
    assert names(descending=True) == [a.name for a in reversed(made)]
    assert names(sport_types=[common_pb2.SPORT_TYPE_RIDE]) == [
        made[1].name,
        made[4].name,
        made[7].name,
    ]
    assert names(
        start_time_from=_ts(START + dt.timedelta(days=2)),
        start_time_to=_ts(START + dt.timedelta(days=5)),
    ) == [a.name for a in made[2:5]]
    assert names(
        start_time_from=_ts(START + dt.timedelta(days=2)),
        sport_types=[common_pb2.SPORT_TYPE_RUN, common_pb2.SPORT_TYPE_SWIM],
    ) == [made[i].name for i in (2, 3, 5, 6, 8)]


def test_list_rejects_inverted_time_range(activities: Stub, athlete: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        activities.ListActivities(
            activity_pb2.ListActivitiesRequest(
                parent=athlete, start_time_from=_ts(START), start_time_to=_ts(START)
            )
        )
    assert list(violations(caught.value)) == ["start_time_to"]


def test_list_of_missing_athlete_is_not_found(activities: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        activities.ListActivities(activity_pb2.ListActivitiesRequest(parent="athletes/abc"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _database(server: ServerThread) -> Database:
    assert server.running is not None
    return server.running.database


def test_stream_samples_in_chunks_with_all_channels(server: ServerThread, activities: Stub) -> None:
    athlete_id, activity_id = seed_activity_with_samples(_database(server), 2_345)
    name = f"athletes/{athlete_id}/activities/{activity_id}"
    chunks = list(
        activities.StreamActivitySamples(
            activity_pb2.StreamActivitySamplesRequest(name=name, chunk_size=500)
        )
    )
    assert [len(c.samples) for c in chunks] == [500, 500, 500, 500, 345]
    samples = [s for c in chunks for s in c.samples]
    seconds = [s.time.seconds for s in samples]
    assert seconds == sorted(seconds)
    assert len(set(seconds)) == 2_345
    last = samples[-1]
    assert last.distance_meters == 3.0 * 2_344
    assert last.heart_rate_bpm == 120 + 2_344 % 40
    assert last.lat_lng.longitude == 13.4
    assert not last.HasField("power_watts")
    fetched = activities.GetActivity(activity_pb2.GetActivityRequest(name=name))
    assert fetched.sample_count == 2_345


def test_stream_samples_only_requested_channels(server: ServerThread, activities: Stub) -> None:
    athlete_id, activity_id = seed_activity_with_samples(_database(server), 30)
    chunks = list(
        activities.StreamActivitySamples(
            activity_pb2.StreamActivitySamplesRequest(
                name=f"athletes/{athlete_id}/activities/{activity_id}",
                channels=[activity_pb2.SAMPLE_CHANNEL_HEART_RATE],
            )
        )
    )
    assert len(chunks) == 1
    sample = chunks[0].samples[5]
    assert sample.heart_rate_bpm == 125
    assert sample.HasField("time")
    assert not sample.HasField("distance_meters")
    assert not sample.HasField("lat_lng")
    assert not sample.HasField("speed_meters_per_second")


def test_stream_of_manual_activity_is_empty(activities: Stub, athlete: str) -> None:
    created = _create(activities, athlete)
    stream = activities.StreamActivitySamples(
        activity_pb2.StreamActivitySamplesRequest(name=created.name)
    )
    assert list(stream) == []


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"name": "athletes/x/activities/y", "chunk_size": -1}, "chunk_size"),
        ({"name": "athletes/x/activities/y", "channels": [77]}, "channels[0]"),
        ({"name": "activities/y"}, "name"),
    ],
)
def test_stream_rejects_bad_requests(
    activities: Stub, request_fields: dict[str, object], field: str
) -> None:
    stream = activities.StreamActivitySamples(
        activity_pb2.StreamActivitySamplesRequest(**request_fields)  # type: ignore[arg-type]
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(stream)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == [field]


def test_stream_of_missing_activity_is_not_found(activities: Stub, athlete: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(
            activities.StreamActivitySamples(
                activity_pb2.StreamActivitySamplesRequest(name=f"{athlete}/activities/missing")
            )
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_pages_through_what_one_job_created(
    server: ServerThread, activities: activity_pb2_grpc.ActivityServiceStub, athlete: str
) -> None:
    assert server.running is not None
    athlete_id = athlete.split("/")[1]
    start = dt.datetime(2025, 3, 1, 7, tzinfo=dt.UTC)
    with server.running.database.transaction() as session:
        repo = ActivityRepository(session)
        for i in range(5):
            repo.add(
                athlete_id,
                ActivityEdit(title=f"Imported {i}", sport_type="Run"),
                Measurements(
                    start_time=start + dt.timedelta(days=i), elapsed=dt.timedelta(hours=1)
                ),
                source=Source.FILE,
                external_id=f"file-{i}.fit",
                source_job_id="job-a" if i % 2 == 0 else "job-b",
            )
    job = f"{athlete}/jobs/job-a"
    seen, token = [], ""
    while True:
        page = activities.ListActivities(
            activity_pb2.ListActivitiesRequest(
                parent=athlete, source_job=job, page_size=2, page_token=token
            )
        )
        seen += [(a.title, a.source_job) for a in page.activities]
        token = page.next_page_token
        if not token:
            break
    assert seen == [(f"Imported {i}", job) for i in (0, 2, 4)]

    with pytest.raises(grpc.RpcError) as caught:
        activities.ListActivities(
            activity_pb2.ListActivitiesRequest(parent=athlete, source_job="athletes/other/jobs/x")
        )
    assert violations(caught.value) == {"source_job": "must be a job of `parent`"}
    with pytest.raises(grpc.RpcError) as caught:
        activities.ListActivities(
            activity_pb2.ListActivitiesRequest(parent=athlete, source_job="jobs/x")
        )
    assert set(violations(caught.value)) == {"source_job"}


def _hill_samples(start: dt.datetime, seconds: int) -> list[Sample]:
    """A ride at 5 m/s over a hill: 60 m up in the first half, 60 m down in the second."""
    half = seconds / 2
    return [
        Sample(
            time=start + dt.timedelta(seconds=i),
            distance_meters=5.0 * i,
            altitude_meters=100.0 + 60.0 * (1 - abs(i - half) / half),
            heart_rate_bpm=130 + i % 20,
            cadence_rpm=90,
            power_watts=400 if i == 100 else 200,
        )
        for i in range(seconds + 1)
    ]


def test_sample_metrics_are_stored_and_read_back(
    server: ServerThread, activities: Stub, athlete: str
) -> None:
    assert server.running is not None
    athlete_id = athlete.split("/")[1]
    with server.running.database.transaction() as session:
        given = ActivityRepository(session).add(
            athlete_id,
            ActivityEdit(title="From a file", sport_type="Ride"),
            Measurements(
                start_time=START,
                elapsed=dt.timedelta(hours=1),
                elevation_loss_meters=321.5,
                average_cadence_rpm=87.5,
                average_power_watts=201.25,
                max_power_watts=880.0,
                average_speed_meters_per_second=7.75,
                max_speed_meters_per_second=16.5,
            ),
            source=Source.FILE,
            external_id="given.fit",
        )
    got = activities.GetActivity(
        activity_pb2.GetActivityRequest(name=f"{athlete}/activities/{given.id}")
    )
    assert (
        got.total_elevation_loss_meters,
        got.average_cadence_rpm,
        got.average_power_watts,
        got.max_power_watts,
        got.average_speed_meters_per_second,
        got.max_speed_meters_per_second,
    ) == (321.5, 87.5, 201.25, 880.0, 7.75, 16.5)

    # A manual entry has none of them (and cannot set them: they are output only).
    manual = _create(
        activities, athlete, average_power_watts=250.0, max_speed_meters_per_second=9.0
    )
    for field in (
        "total_elevation_loss_meters",
        "average_cadence_rpm",
        "average_power_watts",
        "max_power_watts",
        "average_speed_meters_per_second",
        "max_speed_meters_per_second",
    ):
        assert not manual.HasField(field), field


def test_an_external_activity_gets_what_its_source_lacks_from_its_samples(
    server: ServerThread, activities: Stub, athlete: str
) -> None:
    assert server.running is not None
    athlete_id = athlete.split("/")[1]
    external = ExternalActivities(server.running.database, Source.FILE)
    samples = _hill_samples(START, 1200)
    summary = summarize(samples)
    edit = ActivityEdit(title="Hill ride", sport_type="Ride")
    # The source gave its own average power; everything else it left empty.
    given = Measurements(start_time=START, elapsed=dt.timedelta(seconds=1200),
                         average_power_watts=190.0)  # fmt: skip
    activity, created, written = external.write(
        athlete_id, "hill.fit", edit, given, {}, samples, None
    )
    assert (created, written) == (True, 1201)
    name = f"{athlete}/activities/{activity.id}"
    got = activities.GetActivity(activity_pb2.GetActivityRequest(name=name))
    assert got.average_power_watts == 190.0  # the source's value wins
    assert got.max_power_watts == 400.0
    assert got.average_cadence_rpm == pytest.approx(90.0)
    assert got.average_speed_meters_per_second == pytest.approx(5.0)
    assert got.max_speed_meters_per_second == pytest.approx(5.0)
    assert got.distance_meters == pytest.approx(6000.0)
    assert got.moving_time.ToSeconds() == 1200
    # Smoothing rounds the summit off by about a metre on each side.
    assert got.total_elevation_gain_meters == pytest.approx(60.0, abs=2.0)
    assert got.total_elevation_loss_meters == pytest.approx(60.0, abs=2.0)
    assert got.total_elevation_loss_meters == summary.elevation_loss_meters
    assert got.average_heart_rate_bpm == summary.average_heart_rate_bpm

    # An update without samples (a title edit at the source) keeps what the stored ones say.
    renamed = ActivityEdit(title="Hill ride, renamed", sport_type="Ride")
    external.write(athlete_id, "hill.fit", renamed, given, {}, None, None)
    again = activities.GetActivity(activity_pb2.GetActivityRequest(name=name))
    assert again.title == "Hill ride, renamed"
    assert again.total_elevation_loss_meters == got.total_elevation_loss_meters
    assert again.average_speed_meters_per_second == got.average_speed_meters_per_second
    assert again.max_power_watts == 400.0

"""Personal records: best efforts are kept when a run's samples are written (and dropped
when it stops being a run), and the records are the fastest of them, all-time or per year,
with their age grade. Real database (PostgreSQL and SQLite), no Strava."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from stride.v1 import analytics_pb2, analytics_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from domain.activities import ActivityEdit, Measurements, Sample
from domain.athletes import AthleteProfile, Sex
from domain.best_efforts import Distance
from domain.errors import InvalidArgument
from runtime import Runtime
from services.records import PersonalRecord
from storage.repositories.athletes import AthleteRepository
from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings


@pytest.fixture
def server(database_url: str | None, tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_settings(tmp_path / "data", database_url)) as running:
        yield running


@pytest.fixture
def runtime(server: ServerThread) -> Runtime:
    assert server.running is not None
    return server.running.runtime


@pytest.fixture
def athlete_id(runtime: Runtime) -> str:
    profile = AthleteProfile(display_name="R", time_zone="Europe/Oslo",
                             birth_date=dt.date(1975, 1, 1), sex=Sex.MALE)  # fmt: skip
    with runtime.database.transaction() as session:
        return AthleteRepository(session).add(profile, None).id


def _run(
    runtime: Runtime,
    athlete_id: str,
    external_id: str,
    start: dt.datetime,
    speed: float,
    meters: float,
    sport: str = "Run",
    samples: bool = True,
) -> str:
    """A run at a constant `speed` (m/s) sampled every second."""
    seconds = int(meters / speed)
    points = [
        Sample(time=start + dt.timedelta(seconds=t), distance_meters=t * speed)
        for t in range(seconds + 1)
    ]
    measurements = Measurements(start_time=start, elapsed=dt.timedelta(seconds=seconds),
                                time_zone="Europe/Oslo", distance_meters=meters)  # fmt: skip
    activity, _, _ = runtime.strava_activities.write(
        athlete_id, external_id, ActivityEdit(title="run", sport_type=sport), measurements,
        {"id": external_id}, points if samples else None, None,
    )  # fmt: skip
    return activity.id


def _records(runtime: Runtime, athlete_id: str, **filters: object) -> list[PersonalRecord]:
    options: dict[str, object] = {
        "per_year": False,
        "year": None,
        "distances": (),
        "sport_types": (),
        "page_size": 100,
        "page_token": "",
    }
    options.update(filters)
    page, _ = runtime.records.list_page(athlete_id, **options)  # type: ignore[arg-type]
    return list(page)


def test_the_fastest_effort_per_distance_is_the_record_with_its_age_grade(
    runtime: Runtime, athlete_id: str
) -> None:
    slow = _run(runtime, athlete_id, "1", dt.datetime(2024, 5, 1, 6, tzinfo=dt.UTC), 3.0, 10_500)
    fast = _run(runtime, athlete_id, "2", dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC), 4.0, 5_200)
    records = {r.best.distance: r for r in _records(runtime, athlete_id)}
    assert set(records) == {Distance.FOUR_HUNDRED_M, Distance.ONE_K, Distance.ONE_MILE,
                            Distance.FIVE_K, Distance.TEN_K}  # fmt: skip
    five = records[Distance.FIVE_K]
    assert five.best.activity_id == fast
    assert five.best.elapsed_seconds == pytest.approx(1250.0, abs=1e-6)  # 5000 / 4
    assert five.record_id == "5k-all"
    assert five.graded is not None
    assert five.graded.age == 50  # on 1 May 2025
    assert str(five.graded.grade.factor) == "0.8775"  # published: M, 50, 5K
    assert records[Distance.TEN_K].best.activity_id == slow  # only the slow one is that long
    assert records[Distance.FOUR_HUNDRED_M].graded is None  # below the mile: no grade

    per_year = _records(runtime, athlete_id, per_year=True)
    keys = [(r.year, r.best.distance) for r in per_year]
    assert keys[:4] == [(2025, Distance.FOUR_HUNDRED_M), (2025, Distance.ONE_K),
                        (2025, Distance.ONE_MILE), (2025, Distance.FIVE_K)]  # fmt: skip
    assert (2024, Distance.TEN_K) in keys
    only_2024 = _records(runtime, athlete_id, per_year=True, year=2024)
    assert {r.year for r in only_2024} == {2024}


def test_records_page_in_order_and_tokens_bind_the_filters(
    runtime: Runtime, athlete_id: str
) -> None:
    _run(runtime, athlete_id, "1", dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC), 4.0, 5_200)
    seen: list[Distance] = []
    token = ""
    while True:
        page, token = runtime.records.list_page(
            athlete_id, per_year=False, year=None, distances=(), sport_types=(),
            page_size=2, page_token=token,
        )  # fmt: skip
        seen += [r.best.distance for r in page]
        if not token:
            break
    assert seen == [Distance.FOUR_HUNDRED_M, Distance.ONE_K, Distance.ONE_MILE, Distance.FIVE_K]
    _, token = runtime.records.list_page(athlete_id, per_year=False, year=None, distances=(),
                                         sport_types=(), page_size=2, page_token="")  # fmt: skip
    with pytest.raises(InvalidArgument):
        runtime.records.list_page(athlete_id, per_year=True, year=None, distances=(),
                                  sport_types=(), page_size=2, page_token=token)  # fmt: skip
    with pytest.raises(InvalidArgument):
        _records(runtime, athlete_id, year=2025)  # a year needs per-year records


def test_best_efforts_follow_the_samples_and_the_sport(runtime: Runtime, athlete_id: str) -> None:
    start = dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC)
    _run(runtime, athlete_id, "1", start, 4.0, 5_200)
    assert len(_records(runtime, athlete_id)) == 4
    # Edited on the source without new samples: still a run, the efforts stay.
    _run(runtime, athlete_id, "1", start, 4.0, 5_200, samples=False)
    assert len(_records(runtime, athlete_id)) == 4
    # Now it says it was a ride: no records from it.
    _run(runtime, athlete_id, "1", start, 4.0, 5_200, sport="Ride", samples=False)
    assert _records(runtime, athlete_id) == []
    # A run again: the stored samples give its efforts back.
    _run(runtime, athlete_id, "1", start, 4.0, 5_200, samples=False)
    assert len(_records(runtime, athlete_id)) == 4


def test_list_personal_records_through_the_api(
    server: ServerThread, runtime: Runtime, athlete_id: str
) -> None:
    _run(runtime, athlete_id, "1", dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC), 4.0, 5_200)
    parent = f"athletes/{athlete_id}"
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        first = stub.ListPersonalRecords(
            analytics_pb2.ListPersonalRecordsRequest(parent=parent, page_size=3)
        )
        names = [r.name for r in first.personal_records]
        assert names == [
            f"{parent}/personalRecords/{slug}" for slug in ("400m-all", "1k-all", "mile-all")
        ]
        assert not first.personal_records[0].HasField("age_grade")  # 400 m: no grade
        rest = stub.ListPersonalRecords(
            analytics_pb2.ListPersonalRecordsRequest(parent=parent, page_size=3,
                                                     page_token=first.next_page_token)
        )  # fmt: skip
        (five,) = rest.personal_records
        assert five.distance == analytics_pb2.BEST_EFFORT_DISTANCE_5_KM
        assert five.time.seconds == 1250
        assert five.age_grade.age_factor == pytest.approx(0.8775)
        assert five.activity.startswith(f"{parent}/activities/")
        assert rest.next_page_token == ""
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListPersonalRecords(analytics_pb2.ListPersonalRecordsRequest(
                parent=parent, period=analytics_pb2.RECORD_PERIOD_YEAR,
                page_token=first.next_page_token))  # fmt: skip
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        yearly = stub.ListPersonalRecords(analytics_pb2.ListPersonalRecordsRequest(
            parent=parent, period=analytics_pb2.RECORD_PERIOD_YEAR, year=2025,
            distances=[analytics_pb2.BEST_EFFORT_DISTANCE_5_KM]))  # fmt: skip
        assert [(r.year, r.name.rsplit("/", 1)[1]) for r in yearly.personal_records] == [
            (2025, "5k-2025")
        ]
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
        stub = analytics_pb2_grpc.AnalyticsServiceStub(own)
        assert stub.ListPersonalRecords(
            analytics_pb2.ListPersonalRecordsRequest(parent=parent)
        ).personal_records
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListPersonalRecords(
                analytics_pb2.ListPersonalRecordsRequest(parent="athletes/someone-else")
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

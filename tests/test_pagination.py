"""AIP-158 pagination: exactly-once walks under concurrent writes, tamper-proof tokens."""

from __future__ import annotations

import datetime as dt
import random
import threading

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc, common_pb2

from domain.activities import ActivityEdit, Measurements, Source
from storage.repositories.activities import ActivityRepository
from tests.support import ServerThread, reason, violations

START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def _new_athlete(stub: athlete_pb2_grpc.AthleteServiceStub) -> str:
    return stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Pager", time_zone="UTC")
        )
    ).name


def _bulk_insert(server: ServerThread, athlete: str, count: int, seed: int) -> None:
    """Seed many activities at random start times (two share each second, to test ties)."""
    assert server.running is not None
    rng = random.Random(seed)
    athlete_id = athlete.split("/")[1]
    with server.running.database.transaction() as session:
        repo = ActivityRepository(session)
        for i in range(count):
            repo.add(
                athlete_id,
                ActivityEdit(title=f"run {i}", sport_type="Run"),
                Measurements(
                    start_time=START + dt.timedelta(minutes=rng.randrange(count // 2)),
                    elapsed=dt.timedelta(minutes=30),
                ),
                source=Source.MANUAL,
            )


def _walk(
    stub: activity_pb2_grpc.ActivityServiceStub, athlete: str, page_size: int, descending: bool
) -> list[activity_pb2.Activity]:
    seen: list[activity_pb2.Activity] = []
    token = ""
    while True:
        page = stub.ListActivities(
            activity_pb2.ListActivitiesRequest(
                parent=athlete, page_size=page_size, page_token=token, descending=descending
            )
        )
        assert len(page.activities) <= page_size
        seen.extend(page.activities)
        token = page.next_page_token
        if not token:
            return seen


@pytest.mark.parametrize("descending", [False, True])
def test_walk_returns_each_activity_once_in_order_during_concurrent_inserts(
    server: ServerThread,
    athletes: athlete_pb2_grpc.AthleteServiceStub,
    activities: activity_pb2_grpc.ActivityServiceStub,
    descending: bool,
) -> None:
    athlete = _new_athlete(athletes)
    _bulk_insert(server, athlete, 1050, seed=7)
    existing = {a.name for a in _walk(activities, athlete, 1000, descending)}
    assert len(existing) == 1050

    stop = threading.Event()
    inserted: list[str] = []

    def insert_concurrently() -> None:
        rng = random.Random(11)
        while not stop.is_set():
            created = activities.CreateActivity(
                activity_pb2.CreateActivityRequest(
                    parent=athlete,
                    activity=activity_pb2.Activity(
                        title="late upload",
                        sport_type=common_pb2.SPORT_TYPE_RIDE,
                        start_time=timestamp_pb2.Timestamp(
                            seconds=int(START.timestamp()) + rng.randrange(60 * 525)
                        ),
                        elapsed_time=duration_pb2.Duration(seconds=600),
                    ),
                )
            )
            inserted.append(created.name)

    writer = threading.Thread(target=insert_concurrently)
    writer.start()
    try:
        walked = _walk(activities, athlete, 100, descending)
    finally:
        stop.set()
        writer.join()

    names = [a.name for a in walked]
    assert len(names) == len(set(names)), "an activity appeared twice"
    assert existing <= set(names), "an activity that existed before the walk was skipped"
    assert set(names) - existing <= set(inserted)
    assert inserted, "the writer never ran during the walk"
    keys = [(a.start_time.ToDatetime(), a.name.rsplit("/", 1)[1]) for a in walked]
    assert keys == sorted(keys, reverse=descending)


def test_page_size_default_maximum_and_negative(
    server: ServerThread,
    athletes: athlete_pb2_grpc.AthleteServiceStub,
    activities: activity_pb2_grpc.ActivityServiceStub,
) -> None:
    athlete = _new_athlete(athletes)
    _bulk_insert(server, athlete, 1010, seed=3)

    def count(size: int) -> int:
        request = activity_pb2.ListActivitiesRequest(parent=athlete, page_size=size)
        return len(activities.ListActivities(request).activities)

    assert count(0) == 50
    assert count(5000) == 1000
    with pytest.raises(grpc.RpcError) as caught:
        count(-1)
    assert violations(caught.value) == {"page_size": "must not be negative"}


def test_modified_foreign_or_replayed_tokens_are_rejected(
    server: ServerThread,
    athletes: athlete_pb2_grpc.AthleteServiceStub,
    activities: activity_pb2_grpc.ActivityServiceStub,
) -> None:
    athlete, other = _new_athlete(athletes), _new_athlete(athletes)
    _bulk_insert(server, athlete, 10, seed=1)
    token = activities.ListActivities(
        activity_pb2.ListActivitiesRequest(parent=athlete, page_size=3)
    ).next_page_token
    assert token

    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    bad_requests = {
        "modified": activity_pb2.ListActivitiesRequest(parent=athlete, page_token=flipped),
        "garbage": activity_pb2.ListActivitiesRequest(parent=athlete, page_token="%%%"),
        "other parent": activity_pb2.ListActivitiesRequest(parent=other, page_token=token),
        "other filter": activity_pb2.ListActivitiesRequest(
            parent=athlete, page_token=token, sport_types=[common_pb2.SPORT_TYPE_RUN]
        ),
        "other order": activity_pb2.ListActivitiesRequest(
            parent=athlete, page_token=token, descending=True
        ),
    }
    for label, request in bad_requests.items():
        with pytest.raises(grpc.RpcError) as caught:
            activities.ListActivities(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        assert list(violations(caught.value)) == ["page_token"], label
        assert reason(caught.value) == "INVALID_PAGE_TOKEN", label

    athlete_token = athletes.ListAthletes(
        athlete_pb2.ListAthletesRequest(page_size=1)
    ).next_page_token
    with pytest.raises(grpc.RpcError) as caught:
        activities.ListActivities(
            activity_pb2.ListActivitiesRequest(parent=athlete, page_token=athlete_token)
        )
    assert reason(caught.value) == "INVALID_PAGE_TOKEN"
    # A different page size on the next page is allowed (AIP-158).
    page = activities.ListActivities(
        activity_pb2.ListActivitiesRequest(parent=athlete, page_token=token, page_size=100)
    )
    assert len(page.activities) == 7

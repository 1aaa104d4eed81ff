"""Concurrent calls on PostgreSQL and SQLite: no lost update, etags (AIP-154), and races
with deletes that answer NOT_FOUND or ABORTED, never INTERNAL; no log line carries the
parameters of a failed statement."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc, common_pb2

from domain.activities import ActivityEdit, Measurements, Source
from domain.athletes import AthleteProfile
from server.errors import from_exception
from storage.models import AthleteRow
from storage.repositories.activities import ActivityRepository
from storage.repositories.athletes import AthleteRepository
from tests.support import LogCapture, ServerThread, detail, reason

AthleteStub = athlete_pb2_grpc.AthleteServiceStub
ActivityStub = activity_pb2_grpc.ActivityServiceStub
ROUNDS = 20
RACE_ROUNDS = 25
OK = grpc.StatusCode.OK


class Racer:
    """Runs calls at the same instant (a barrier), each on its own thread."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def __call__(self, *calls: Callable[[], Any]) -> list[grpc.StatusCode]:
        """Each call's status code."""
        return [code for code, _ in self.outcomes(*calls)]

    def outcomes(self, *calls: Callable[[], Any]) -> list[tuple[grpc.StatusCode, Any]]:
        """Each call's status code and response (None when it failed)."""
        barrier = threading.Barrier(len(calls))

        def run(call: Callable[[], Any]) -> tuple[grpc.StatusCode, Any]:
            barrier.wait(timeout=30)
            try:
                return OK, call()
            except grpc.RpcError as error:
                return error.code(), None

        return list(self._pool.map(run, calls))


@pytest.fixture
def race() -> Iterator[Racer]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield Racer(pool)


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return OK


def _athlete(stub: AthleteStub, name: str = "Runner") -> athlete_pb2.Athlete:
    return stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name=name, time_zone="Europe/Oslo")
        )
    )


def _new_activity(**fields: Any) -> activity_pb2.Activity:
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(dt.datetime(2025, 4, 6, 7, 0, tzinfo=dt.UTC))
    values: dict[str, Any] = {
        "title": "Tempo",
        "sport_type": common_pb2.SPORT_TYPE_RUN,
        "start_time": start,
        "elapsed_time": duration_pb2.Duration(seconds=3600),
    }
    values.update(fields)
    return activity_pb2.Activity(**values)


def _activity(stub: ActivityStub, parent: str) -> activity_pb2.Activity:
    return stub.CreateActivity(
        activity_pb2.CreateActivityRequest(parent=parent, activity=_new_activity())
    )


def _update_athlete(
    stub: AthleteStub, name: str, path: str, etag: str = "", **value: Any
) -> Callable[[], athlete_pb2.Athlete]:
    request = athlete_pb2.UpdateAthleteRequest(
        athlete=athlete_pb2.Athlete(name=name, etag=etag, **value),
        update_mask=field_mask_pb2.FieldMask(paths=[path]),
    )
    return lambda: stub.UpdateAthlete(request)


def _update_activity(
    stub: ActivityStub, name: str, path: str, etag: str = "", **value: Any
) -> Callable[[], activity_pb2.Activity]:
    request = activity_pb2.UpdateActivityRequest(
        activity=activity_pb2.Activity(name=name, etag=etag, **value),
        update_mask=field_mask_pb2.FieldMask(paths=[path]),
    )
    return lambda: stub.UpdateActivity(request)


def _no_unhandled_errors(logs: LogCapture) -> None:
    assert logs.events("unhandled error") == []


def test_concurrent_disjoint_athlete_updates_all_stick(
    athletes: AthleteStub, race: Racer, logs: LogCapture
) -> None:
    name = _athlete(athletes).name
    for r in range(ROUNDS):
        codes = race(
            _update_athlete(athletes, name, "display_name", display_name=f"Runner {r}"),
            _update_athlete(athletes, name, "weight_kg", weight_kg=50.0 + r),
            _update_athlete(athletes, name, "max_heart_rate_bpm", max_heart_rate_bpm=150 + r),
        )
        assert codes == [OK] * 3
        got = athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name))
        assert (got.display_name, got.weight_kg, got.max_heart_rate_bpm) == (
            f"Runner {r}",
            50.0 + r,
            150 + r,
        ), f"an update was lost in round {r}"
    # Every one of the 3 * ROUNDS updates made a new revision.
    assert got.etag == f'"{1 + 3 * ROUNDS}"'
    _no_unhandled_errors(logs)


SPORTS = [common_pb2.SPORT_TYPE_RUN, common_pb2.SPORT_TYPE_RIDE, common_pb2.SPORT_TYPE_SWIM]


def test_concurrent_disjoint_activity_updates_all_stick(
    athletes: AthleteStub, activities: ActivityStub, race: Racer, logs: LogCapture
) -> None:
    name = _activity(activities, _athlete(athletes).name).name
    for r in range(ROUNDS):
        sport = SPORTS[(r + 1) % len(SPORTS)]  # differs from the previous round's
        codes = race(
            _update_activity(activities, name, "title", title=f"Intervals {r}"),
            _update_activity(activities, name, "description", description=f"Set {r}"),
            _update_activity(activities, name, "sport_type", sport_type=sport),
        )
        assert codes == [OK] * 3
        got = activities.GetActivity(activity_pb2.GetActivityRequest(name=name))
        assert (got.title, got.description, got.sport_type) == (
            f"Intervals {r}",
            f"Set {r}",
            sport,
        ), f"an update was lost in round {r}"
    assert got.etag == f'"{1 + 3 * ROUNDS}"'
    _no_unhandled_errors(logs)


def _assert_etag_mismatch(error: grpc.RpcError, resource_name: str) -> None:
    assert error.code() == grpc.StatusCode.ABORTED
    assert reason(error) == "ETAG_MISMATCH"
    assert detail(error, error_details_pb2.ResourceInfo).resource_name == resource_name


def test_athlete_etag_guards_update_and_delete(athletes: AthleteStub) -> None:
    created = _athlete(athletes, "Before")
    name, first = created.name, created.etag
    assert first == '"1"'
    assert athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name)).etag == first
    listed = athletes.ListAthletes(athlete_pb2.ListAthletesRequest(page_size=1000)).athletes
    assert [a.etag for a in listed if a.name == name] == [first]

    # The current etag: applied, and the etag changes (Get agrees with the response).
    updated = _update_athlete(athletes, name, "display_name", first, display_name="After")()
    assert updated.display_name == "After"
    assert updated.etag not in ("", first)
    assert athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name)) == updated

    # The old etag: ABORTED, nothing written.
    stale = _update_athlete(athletes, name, "display_name", first, display_name="Lost")
    with pytest.raises(grpc.RpcError) as caught:
        stale()
    _assert_etag_mismatch(caught.value, name)
    with pytest.raises(grpc.RpcError) as caught:
        athletes.UpdateAthlete(
            athlete_pb2.UpdateAthleteRequest(athlete=athlete_pb2.Athlete(name=name, etag="junk"))
        )
    _assert_etag_mismatch(caught.value, name)
    assert athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name)) == updated

    # A no-op update is not a new version; `etag` in a mask is not a field to write.
    same = athletes.UpdateAthlete(
        athlete_pb2.UpdateAthleteRequest(
            athlete=athlete_pb2.Athlete(name=name, display_name="After", etag=updated.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name", "etag"]),
        )
    )
    assert same == updated
    # An empty etag is unconditional.
    unconditional = _update_athlete(athletes, name, "weight_kg", weight_kg=61.0)()
    assert unconditional.etag not in (first, updated.etag)

    with pytest.raises(grpc.RpcError) as caught:
        athletes.DeleteAthlete(athlete_pb2.DeleteAthleteRequest(name=name, etag=updated.etag))
    _assert_etag_mismatch(caught.value, name)
    assert athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name)) == unconditional
    athletes.DeleteAthlete(athlete_pb2.DeleteAthleteRequest(name=name, etag=unconditional.etag))
    with pytest.raises(grpc.RpcError) as caught:
        athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # Gone is NOT_FOUND whatever the etag says.
    with pytest.raises(grpc.RpcError) as caught:
        athletes.DeleteAthlete(athlete_pb2.DeleteAthleteRequest(name=name, etag=first))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        _update_athlete(athletes, name, "display_name", first, display_name="Ghost")()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_activity_etag_guards_update_and_delete(
    athletes: AthleteStub, activities: ActivityStub
) -> None:
    created = _activity(activities, _athlete(athletes).name)
    name, first = created.name, created.etag
    assert first == '"1"'
    assert activities.GetActivity(activity_pb2.GetActivityRequest(name=name)).etag == first

    updated = _update_activity(activities, name, "title", first, title="Renamed")()
    assert updated.title == "Renamed"
    assert updated.etag not in ("", first)
    assert activities.GetActivity(activity_pb2.GetActivityRequest(name=name)) == updated
    parent = name.rsplit("/activities/", 1)[0]
    listed = activities.ListActivities(activity_pb2.ListActivitiesRequest(parent=parent))
    assert [a.etag for a in listed.activities] == [updated.etag]

    with pytest.raises(grpc.RpcError) as caught:
        _update_activity(activities, name, "title", first, title="Lost")()
    _assert_etag_mismatch(caught.value, name)
    assert activities.GetActivity(activity_pb2.GetActivityRequest(name=name)) == updated

    same = activities.UpdateActivity(
        activity_pb2.UpdateActivityRequest(
            activity=activity_pb2.Activity(name=name, title="Renamed", etag=updated.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["title", "etag"]),
        )
    )
    assert same == updated

    with pytest.raises(grpc.RpcError) as caught:
        activities.DeleteActivity(activity_pb2.DeleteActivityRequest(name=name, etag=first))
    _assert_etag_mismatch(caught.value, name)
    activities.DeleteActivity(activity_pb2.DeleteActivityRequest(name=name, etag=updated.etag))
    with pytest.raises(grpc.RpcError) as caught:
        activities.GetActivity(activity_pb2.GetActivityRequest(name=name))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_athlete_update_racing_delete_is_ok_or_not_found(
    athletes: AthleteStub, race: Racer, logs: LogCapture
) -> None:
    for r in range(RACE_ROUNDS):
        name = _athlete(athletes).name
        update, delete = race(
            _update_athlete(athletes, name, "display_name", display_name=f"Late {r}"),
            partial(athletes.DeleteAthlete, athlete_pb2.DeleteAthleteRequest(name=name)),
        )
        assert update in (OK, grpc.StatusCode.NOT_FOUND), f"round {r}: {update}"
        assert delete == OK
    _no_unhandled_errors(logs)


def test_activity_update_racing_deletes_is_ok_or_not_found(
    athletes: AthleteStub, activities: ActivityStub, race: Racer, logs: LogCapture
) -> None:
    for r in range(RACE_ROUNDS):
        athlete = _athlete(athletes).name
        name = _activity(activities, athlete).name
        # The activity itself, or its athlete (and so the activity), is deleted.
        delete = (
            partial(activities.DeleteActivity, activity_pb2.DeleteActivityRequest(name=name))
            if r % 2
            else partial(athletes.DeleteAthlete, athlete_pb2.DeleteAthleteRequest(name=athlete))
        )
        update_code, delete_code = race(
            _update_activity(activities, name, "title", title=f"Late {r}"), delete
        )
        assert update_code in (OK, grpc.StatusCode.NOT_FOUND), f"round {r}: {update_code}"
        assert delete_code == OK
    _no_unhandled_errors(logs)


def test_create_activity_racing_athlete_deletion_is_never_internal(
    athletes: AthleteStub, activities: ActivityStub, race: Racer, logs: LogCapture
) -> None:
    allowed = (OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ABORTED)
    for r in range(RACE_ROUNDS):
        athlete = _athlete(athletes).name
        request = activity_pb2.CreateActivityRequest(
            parent=athlete,
            activity=_new_activity(title=f"Race {r}"),
            request_id=str(uuid.uuid4()) if r % 2 else "",
        )
        create, delete = race(
            partial(activities.CreateActivity, request),
            partial(athletes.DeleteAthlete, athlete_pb2.DeleteAthleteRequest(name=athlete)),
        )
        assert create in allowed, f"round {r}: {create}"
        assert delete == OK
        # Whatever won, nothing of the athlete is left behind.
        listing = _code(
            partial(activities.ListActivities, activity_pb2.ListActivitiesRequest(parent=athlete))
        )
        assert listing == grpc.StatusCode.NOT_FOUND
    _no_unhandled_errors(logs)


def test_concurrent_retries_of_one_create_return_one_resource(
    athletes: AthleteStub, activities: ActivityStub, race: Racer
) -> None:
    """The request_id (AIP-155) paths, including the one where the unique index decides."""
    parent = _athlete(athletes).name
    for _ in range(5):
        athlete_request = athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Once", time_zone="UTC"),
            request_id=str(uuid.uuid4()),
        )
        activity_request = activity_pb2.CreateActivityRequest(
            parent=parent, activity=_new_activity(), request_id=str(uuid.uuid4())
        )
        for create in (
            partial(athletes.CreateAthlete, athlete_request),
            partial(activities.CreateActivity, activity_request),
        ):
            outcomes = race.outcomes(create, create, create)
            assert [code for code, _ in outcomes] == [OK] * 3
            assert len({response.name for _, response in outcomes}) == 1


def test_a_failed_statement_logs_no_parameters(
    server: ServerThread,
    athletes: AthleteStub,
    logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A statement failing for a reason the API does not map (a bug) is logged with its
    traceback, and the athlete data it carried stays out of the log."""
    marker = f"private-{uuid.uuid4().hex}"

    def broken_add(self: AthleteRepository, *_: Any) -> None:
        session: Session = self.session
        # Rejected by the database for a column other than the one carrying the marker,
        # with a message that does not echo values: NOT NULL on SQLite, a too long value
        # on PostgreSQL (whose NOT NULL message would echo the whole row).
        too_long = None if session.get_bind().dialect.name == "sqlite" else "x" * 65
        session.execute(
            insert(AthleteRow).values(
                id=uuid.uuid4().hex, display_name=marker, time_zone=too_long, revision=1
            )
        )

    monkeypatch.setattr(AthleteRepository, "add", broken_add)
    with pytest.raises(grpc.RpcError) as caught:
        athletes.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name="Someone", time_zone="UTC")
            )
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    [error] = logs.events("unhandled error")
    assert "INSERT INTO athletes" in str(error)
    assert marker not in logs.text


def test_integrity_errors_left_by_races_are_aborted_and_bugs_stay_internal(
    server: ServerThread,
) -> None:
    """What locking does not rule out (a foreign key or unique key violated by a concurrent
    call, an ORM row gone under a flush) is ABORTED and retryable; NOT NULL is a bug."""
    assert server.running is not None
    database = server.running.database
    with database.transaction() as session:
        athlete = AthleteRepository(session).add(
            AthleteProfile(display_name="Taken", time_zone="UTC"), "taken-request"
        )

    def failure(**columns: Any) -> IntegrityError:
        values = {"id": uuid.uuid4().hex, "display_name": "X", "time_zone": "UTC"} | columns
        with pytest.raises(IntegrityError) as caught, database.transaction() as session:
            session.execute(insert(AthleteRow).values(**values))
        return caught.value

    def orphan() -> IntegrityError:
        with pytest.raises(IntegrityError) as caught, database.transaction() as session:
            ActivityRepository(session).add(
                "no-such-athlete",
                ActivityEdit(title="Orphan", sport_type="Run"),
                Measurements(start_time=dt.datetime.now(dt.UTC), elapsed=dt.timedelta(seconds=60)),
                source=Source.MANUAL,
            )
        return caught.value

    for exc in (
        orphan(),
        failure(id=athlete.id),
        failure(request_id="taken-request"),
        StaleDataError("UPDATE statement on table 'athletes' expected to update 1 row(s)"),
    ):
        mapped = from_exception(exc, "/stride.v1.AthleteService/UpdateAthlete")
        assert mapped is not None, exc
        assert mapped.code == grpc.StatusCode.ABORTED
        assert mapped.retry_after_seconds is not None
        info = error_details_pb2.ErrorInfo()
        mapped.status.details[0].Unpack(info)
        assert info.reason == "CONCURRENT_MODIFICATION"
    assert (
        from_exception(failure(time_zone=None), "/stride.v1.AthleteService/UpdateAthlete") is None
    )

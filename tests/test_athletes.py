"""AthleteService through a real server, on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from google.type import date_pb2
from sqlalchemy import func, select
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc, common_pb2

from storage.models import ActivitySampleRow
from tests.support import ServerThread, detail, reason, seed_activity_with_samples, violations

Stub = athlete_pb2_grpc.AthleteServiceStub


def _create(stub: Stub, **fields: object) -> athlete_pb2.Athlete:
    values: dict[str, object] = {"display_name": "Paula", "time_zone": "Europe/London"}
    values.update(fields)
    return stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(athlete=athlete_pb2.Athlete(**values))  # type: ignore[arg-type]
    )


def test_create_then_get_round_trips_every_field(athletes: Stub) -> None:
    created = _create(
        athletes,
        birth_date=date_pb2.Date(year=1973, month=12, day=17),
        sex=common_pb2.SEX_FEMALE,
        weight_kg=54.5,
        max_heart_rate_bpm=187,
        resting_heart_rate_bpm=42,
    )
    assert created.name.startswith("athletes/")
    assert created.strava_connection_state == athlete_pb2.STRAVA_CONNECTION_STATE_NOT_CONNECTED
    assert created.create_time == created.update_time
    fetched = athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=created.name))
    assert fetched == created
    assert fetched.birth_date == date_pb2.Date(year=1973, month=12, day=17)
    assert fetched.weight_kg == 54.5
    assert not _create(athletes).HasField("weight_kg")


def test_create_with_request_id_is_idempotent(athletes: Stub) -> None:
    request_id = str(uuid.uuid4())
    request = athlete_pb2.CreateAthleteRequest(
        athlete=athlete_pb2.Athlete(display_name="Once", time_zone="UTC"), request_id=request_id
    )
    first = athletes.CreateAthlete(request)
    again = athletes.CreateAthlete(request)
    assert again == first
    listed = athletes.ListAthletes(athlete_pb2.ListAthletesRequest(page_size=1000))
    assert [a.name for a in listed.athletes].count(first.name) == 1
    assert sum(a.display_name == "Once" for a in listed.athletes) == 1


def test_update_with_mask_changes_only_named_fields(athletes: Stub) -> None:
    created = _create(athletes, max_heart_rate_bpm=190)
    updated = athletes.UpdateAthlete(
        athlete_pb2.UpdateAthleteRequest(
            athlete=athlete_pb2.Athlete(
                name=created.name, display_name="Paula R.", time_zone="Asia/Tokyo"
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    assert updated.display_name == "Paula R."
    assert updated.time_zone == "Europe/London"
    assert updated.max_heart_rate_bpm == 190
    assert updated.update_time.ToDatetime() > created.update_time.ToDatetime()


def test_update_without_mask_uses_populated_fields_and_ignores_output_only(
    athletes: Stub,
) -> None:
    created = _create(athletes, weight_kg=60)
    changed = athlete_pb2.Athlete()
    changed.CopyFrom(created)
    changed.time_zone = "America/New_York"
    changed.strava_connection_state = athlete_pb2.STRAVA_CONNECTION_STATE_CONNECTED
    updated = athletes.UpdateAthlete(athlete_pb2.UpdateAthleteRequest(athlete=changed))
    assert updated.time_zone == "America/New_York"
    assert updated.weight_kg == 60
    assert updated.strava_connection_state == athlete_pb2.STRAVA_CONNECTION_STATE_NOT_CONNECTED


def test_update_with_star_replaces_and_clears_optional_fields(athletes: Stub) -> None:
    created = _create(athletes, weight_kg=60, max_heart_rate_bpm=180)
    updated = athletes.UpdateAthlete(
        athlete_pb2.UpdateAthleteRequest(
            athlete=athlete_pb2.Athlete(name=created.name, display_name="New", time_zone="UTC"),
            update_mask=field_mask_pb2.FieldMask(paths=["*"]),
        )
    )
    assert updated.display_name == "New"
    assert not updated.HasField("weight_kg")
    assert not updated.HasField("max_heart_rate_bpm")


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["nickname"], "'nickname' is not a field that can be updated"),
        (["birth_date.year"], "'birth_date.year' is not a field that can be updated"),
    ],
)
def test_update_rejects_unknown_mask_paths_and_keeps_data(
    athletes: Stub, paths: list[str], expected: str
) -> None:
    created = _create(athletes)
    with pytest.raises(grpc.RpcError) as caught:
        athletes.UpdateAthlete(
            athlete_pb2.UpdateAthleteRequest(
                athlete=athlete_pb2.Athlete(name=created.name, display_name="Changed"),
                update_mask=field_mask_pb2.FieldMask(paths=[*paths, "display_name"]),
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == {"update_mask.paths": expected}
    assert athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=created.name)) == created


def test_update_checks_the_merged_profile(athletes: Stub) -> None:
    created = _create(athletes, max_heart_rate_bpm=150)
    with pytest.raises(grpc.RpcError) as caught:
        athletes.UpdateAthlete(
            athlete_pb2.UpdateAthleteRequest(
                athlete=athlete_pb2.Athlete(name=created.name, resting_heart_rate_bpm=150),
                update_mask=field_mask_pb2.FieldMask(paths=["resting_heart_rate_bpm"]),
            )
        )
    assert violations(caught.value) == {
        "athlete.resting_heart_rate_bpm": "must be below max_heart_rate_bpm"
    }


@pytest.mark.parametrize(
    ("fields", "field", "description"),
    [
        ({"time_zone": "Mars/Olympus"}, "athlete.time_zone", "IANA time zone"),
        ({"time_zone": ""}, "athlete.time_zone", "is required"),
        ({"display_name": " "}, "athlete.display_name", "is required"),
        ({"display_name": "x" * 201}, "athlete.display_name", "at most 200"),
        ({"display_name": "a\x00b"}, "athlete.display_name", "NUL"),
        ({"birth_date": date_pb2.Date(year=2001, month=2, day=30)}, "athlete.birth_date", "date"),
        ({"birth_date": date_pb2.Date(year=2999, month=1, day=1)}, "athlete.birth_date", "today"),
        ({"weight_kg": -3.0}, "athlete.weight_kg", "between"),
        ({"weight_kg": float("nan")}, "athlete.weight_kg", "between"),
        ({"max_heart_rate_bpm": 400}, "athlete.max_heart_rate_bpm", "between"),
        ({"sex": 7}, "athlete.sex", "Sex"),
    ],
)
def test_create_rejects_bad_fields_by_name(
    athletes: Stub, fields: dict[str, object], field: str, description: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _create(athletes, **fields)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(caught.value)
    assert list(found) == [field]
    assert description in found[field]
    assert reason(caught.value) == "INVALID_ARGUMENT"


def test_missing_athlete_is_not_found_with_resource_info(athletes: Stub) -> None:
    name = "athletes/0123456789abcdef"
    for call in (
        lambda: athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name)),
        lambda: athletes.DeleteAthlete(athlete_pb2.DeleteAthleteRequest(name=name)),
        lambda: athletes.UpdateAthlete(
            athlete_pb2.UpdateAthleteRequest(
                athlete=athlete_pb2.Athlete(name=name, display_name="x")
            )
        ),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        info = detail(caught.value, error_details_pb2.ResourceInfo)
        assert (info.resource_type, info.resource_name) == ("stride.dev/Athlete", name)


@pytest.mark.parametrize("name", ["", "athlete/1", "athletes/", "athletes/A B", "athletes/1/x"])
def test_malformed_names_are_invalid_argument(athletes: Stub, name: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == ["name"]


def test_delete_removes_the_athlete_with_their_activities_and_samples(
    server: ServerThread, athletes: Stub, activities: activity_pb2_grpc.ActivityServiceStub
) -> None:
    assert server.running is not None
    database = server.running.database
    athlete_id, recorded_id = seed_activity_with_samples(database, 50)
    name = f"athletes/{athlete_id}"
    manual = activities.CreateActivity(
        activity_pb2.CreateActivityRequest(
            parent=name,
            activity=activity_pb2.Activity(
                title="Easy run",
                sport_type=common_pb2.SPORT_TYPE_RUN,
                start_time=timestamp_pb2.Timestamp(seconds=1_700_000_000),
                elapsed_time=duration_pb2.Duration(seconds=1800),
            ),
        )
    )
    athletes.DeleteAthlete(athlete_pb2.DeleteAthleteRequest(name=name))
    for call in (
        lambda: athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=name)),
        lambda: activities.GetActivity(activity_pb2.GetActivityRequest(name=manual.name)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with database.read_only() as session:
        remaining = session.scalar(
            select(func.count()).where(ActivitySampleRow.activity_id == recorded_id)
        )
    assert remaining == 0


def test_list_pages_in_creation_order(athletes: Stub) -> None:
    created = [_create(athletes, display_name=f"A{i}").name for i in range(7)]
    seen: list[str] = []
    token = ""
    while True:
        page = athletes.ListAthletes(athlete_pb2.ListAthletesRequest(page_size=3, page_token=token))
        assert len(page.athletes) <= 3
        seen += [a.name for a in page.athletes]
        token = page.next_page_token
        if not token:
            break
    assert seen == created

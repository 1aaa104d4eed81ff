"""A profile change that weighs on derived values (heart rates, birth date, sex) starts a
RECOMPUTE job that brings every stored activity's training load and best efforts up to date;
other changes start none. The real server with in-process workers, both databases."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from stride.v1 import athlete_pb2, athlete_pb2_grpc, job_pb2, job_pb2_grpc

from domain import derived
from domain.activities import ActivityEdit, Measurements, Sample
from domain.jobs import JobKind
from runtime import Runtime
from storage.models import ActivityRow
from storage.repositories.athletes import AthleteRepository
from tasks.recompute import recompute_stale
from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings


@pytest.fixture
def server(database_url: str | None, tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_settings(tmp_path / "data", database_url)) as running:
        yield running


def _runtime(server: ServerThread) -> Runtime:
    assert server.running is not None
    return server.running.runtime


def _loads(runtime: Runtime, athlete_id: str) -> list[float | None]:
    with runtime.database.read_primary() as session:
        rows = session.query(ActivityRow).filter_by(athlete_id=athlete_id).order_by(ActivityRow.id)
        return [row.training_load for row in rows]


def _update(channel: grpc.Channel, athlete: str, **fields: object) -> None:
    athlete_pb2_grpc.AthleteServiceStub(channel).UpdateAthlete(
        athlete_pb2.UpdateAthleteRequest(
            athlete=athlete_pb2.Athlete(name=athlete, **fields),  # type: ignore[arg-type]
            update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
        )
    )


def _recomputes(channel: grpc.Channel, athlete: str) -> list[job_pb2.Job]:
    listed = job_pb2_grpc.JobServiceStub(channel).ListJobs(
        job_pb2.ListJobsRequest(parent=athlete, kinds=[job_pb2.JOB_KIND_RECOMPUTE])
    )
    return list(listed.jobs)


def test_a_heart_rate_change_recomputes_training_loads(server: ServerThread) -> None:
    runtime = _runtime(server)
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        athlete = (
            athlete_pb2_grpc.AthleteServiceStub(channel)
            .CreateAthlete(
                athlete_pb2.CreateAthleteRequest(
                    athlete=athlete_pb2.Athlete(display_name="R", time_zone="UTC")
                )
            )
            .name
        )
        athlete_id = athlete.split("/")[1]
        start = dt.datetime(2025, 3, 1, 7, tzinfo=dt.UTC)
        for n in range(3):
            day = start + dt.timedelta(days=n)
            samples = [
                Sample(time=day + dt.timedelta(seconds=t), heart_rate_bpm=150,
                       distance_meters=3.0 * t)
                for t in range(0, 1800, 5)
            ]  # fmt: skip
            measurements = Measurements(start_time=day, elapsed=dt.timedelta(minutes=30),
                                        time_zone="UTC", distance_meters=5400)  # fmt: skip
            edit = ActivityEdit(title="run", sport_type="Run")
            runtime.strava_activities.write(
                athlete_id, str(n), edit, measurements, {"id": n}, samples, None
            )
        before = _loads(runtime, athlete_id)
        assert all(load is not None and load > 0 for load in before)

        _update(channel, athlete, display_name="Renamed")  # weighs on nothing derived
        assert _recomputes(channel, athlete) == []

        _update(channel, athlete, max_heart_rate_bpm=175, resting_heart_rate_bpm=45)
        (job,) = _recomputes(channel, athlete)
        deadline = time.monotonic() + 30
        while job.state != job_pb2.JOB_STATE_SUCCEEDED:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            (job,) = _recomputes(channel, athlete)
        assert job.result.updated == 3
        after = _loads(runtime, athlete_id)
        # HRr at 150 bpm rises from (150-60)/(190-60) to (150-45)/(175-45): more load.
        assert all(
            a is not None and b is not None and a > b for a, b in zip(after, before, strict=True)
        )
        assert runtime.job_store.active(athlete_id, [JobKind.RECOMPUTE]) is None


def test_athletes_behind_the_algorithms_version_are_recomputed_once(
    server: ServerThread,
) -> None:
    runtime = _runtime(server)
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        athlete = (
            athlete_pb2_grpc.AthleteServiceStub(channel)
            .CreateAthlete(
                athlete_pb2.CreateAthleteRequest(
                    athlete=athlete_pb2.Athlete(display_name="Old", time_zone="UTC")
                )
            )
            .name
        )
        athlete_id = athlete.split("/")[1]
        day = dt.datetime(2025, 3, 1, 7, tzinfo=dt.UTC)
        measurements = Measurements(start_time=day, elapsed=dt.timedelta(minutes=30),
                                    time_zone="UTC", distance_meters=5400)  # fmt: skip
        runtime.strava_activities.write(
            athlete_id, "1", ActivityEdit(title="run", sport_type="Run"), measurements,
            {"id": 1}, [], None,
        )  # fmt: skip
        # As if stored before training loads existed, by an older version of the code.
        with runtime.database.transaction() as session:
            session.query(ActivityRow).filter_by(athlete_id=athlete_id).update(
                {"training_load": None}
            )
            AthleteRepository(session).set_derived_version(athlete_id, derived.VERSION - 1)
        assert _loads(runtime, athlete_id) == [None]
        assert runtime.derived.stale(10) == [athlete_id]

        runtime.huey.submit(recompute_stale)
        deadline = time.monotonic() + 30
        while runtime.derived.stale(10):
            assert time.monotonic() < deadline, "the stale athlete was not recomputed"
            time.sleep(0.1)
        (load,) = _loads(runtime, athlete_id)
        assert load is not None
        assert load > 0
        assert len(_recomputes(channel, athlete)) == 1

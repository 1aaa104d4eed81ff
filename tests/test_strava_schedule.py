"""Strava's periodic work: scheduled incremental syncs, token refresh ahead of expiry and
reconciles, each once per interval per athlete (a real server, in-process workers, the
simulator)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stride.v1 import job_pb2

from domain.jobs import JobKind, JobState
from runtime import Runtime
from storage.repositories.strava import StravaConnectionRepository
from tasks.strava.schedule import (
    refresh_expiring,
    scheduled_reconciles,
    scheduled_syncs,
    strava_housekeeping,
)
from tests.strava_flow import connect, create_athlete, strava_overrides
from tests.strava_sim import SimConfig, StravaSimulator
from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings


@pytest.fixture
def sim() -> Iterator[StravaSimulator]:
    config = SimConfig(seed=3, athletes=1, activities=6, stream_step=120)
    with StravaSimulator(config) as simulator:
        yield simulator


@pytest.fixture
def server(
    sim: StravaSimulator, database_url: str | None, tmp_path: Path
) -> Iterator[ServerThread]:
    schedule = {"strava_sync_interval_seconds": 3600, "strava_reconcile_interval_seconds": 86400}
    settings = make_settings(tmp_path / "data", database_url, **strava_overrides(sim, **schedule))
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def runtime(server: ServerThread) -> Runtime:
    assert server.running is not None
    return server.running.runtime


@pytest.fixture
def athlete_id(server: ServerThread, sim: StravaSimulator) -> str:
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        athlete = create_athlete(channel)
        assert connect(channel, athlete, sim, sim.athlete_ids[0]).state == (
            job_pb2.JOB_STATE_SUCCEEDED
        )
    return athlete.split("/")[1]


def _wait(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_connected_athlete_never_synced_gets_one_scheduled_sync(
    runtime: Runtime, athlete_id: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    assert scheduled_syncs(runtime, now) == 1
    assert scheduled_syncs(runtime, now) == 1  # due still: it joins the same job
    jobs = runtime.job_store.list_jobs(athlete_id, kinds=[JobKind.STRAVA_SYNC])
    assert len(jobs) == 1
    assert jobs[0].params["scheduled"] is True
    _wait(lambda: runtime.job_store.get(jobs[0].id).state == JobState.SUCCEEDED)
    # Synced just now: not due until the interval has passed.
    assert scheduled_syncs(runtime, dt.datetime.now(dt.UTC)) == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=runtime.settings.strava_sync_interval_seconds + 1
    )
    assert scheduled_syncs(runtime, later) == 1


def test_tokens_expiring_soon_are_refreshed_and_the_newest_kept(
    runtime: Runtime, athlete_id: str, sim: StravaSimulator
) -> None:
    database, cipher = runtime.database, runtime.token_cipher
    assert cipher is not None
    with database.transaction() as session:
        repo = StravaConnectionRepository(session)
        stored = repo.get(athlete_id)
        assert stored is not None
        # Strava's refresh returns new tokens only in the token's last hour.
        sim.expire_tokens(sim.athlete_ids[0])
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
        repo.save(dataclasses.replace(stored, access_token_expire_time=soon))
    refreshes = sim.count("oauth.token")
    assert refresh_expiring(runtime, dt.datetime.now(dt.UTC)) == 1
    assert sim.count("oauth.token") == refreshes + 1
    with database.read_primary() as session:
        refreshed = StravaConnectionRepository(session).get(athlete_id)
    assert refreshed is not None
    assert refreshed.access_token_expire_time > soon
    assert cipher.decrypt(refreshed.refresh_token_encrypted) != cipher.decrypt(
        stored.refresh_token_encrypted
    )
    assert refresh_expiring(runtime, dt.datetime.now(dt.UTC)) == 0  # nothing expiring now


def test_reconcile_runs_once_per_interval(runtime: Runtime, athlete_id: str) -> None:
    now = dt.datetime.now(dt.UTC)
    assert scheduled_reconciles(runtime, now) == 1
    assert scheduled_reconciles(runtime, now) == 0
    (job,) = runtime.job_store.list_jobs(athlete_id, kinds=[JobKind.STRAVA_RECONCILE])
    _wait(lambda: runtime.job_store.get(job.id).state.terminal)
    assert runtime.job_store.get(job.id).state == JobState.SUCCEEDED


def test_the_housekeeping_task_runs_on_the_queue(runtime: Runtime, athlete_id: str) -> None:
    runtime.huey.submit(strava_housekeeping)
    _wait(lambda: bool(runtime.job_store.list_jobs(athlete_id, kinds=[JobKind.STRAVA_SYNC])))


def test_without_strava_the_housekeeping_does_nothing(
    database_url: str | None, tmp_path: Path
) -> None:
    with ServerThread(make_settings(tmp_path / "data", database_url)) as server:
        assert server.running is not None
        runtime = server.running.runtime
        now = dt.datetime.now(dt.UTC)
        assert refresh_expiring(runtime, now) == 0
        with channel_as(server.address, ADMIN_TOKEN) as channel:
            create_athlete(channel)
        assert scheduled_syncs(runtime, now) == 0
        assert scheduled_reconciles(runtime, now) == 0

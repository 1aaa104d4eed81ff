"""A file import on `stride-worker` processes (PostgreSQL, Redis, a staging directory the
server and the workers share): a worker killed mid-import is replaced, the job resumes
from its checkpoint and every file is stored exactly once."""

from __future__ import annotations

import datetime as dt
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from stride.v1 import job_pb2, job_pb2_grpc

from domain.jobs import JobState
from storage.models import ActivityRow, ActivitySampleRow
from tests.import_flow import gpx_track, upload, zip_of
from tests.strava_flow import create_athlete, watch
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    SharedRedis,
    channel_as,
    make_settings,
    postgres_database,
    server_env,
)
from tests.test_worker import WorkerProcess

FILES = 240
POINTS = 600
# The lease (30 s) expires and the next sweep (every 30 s) re-enqueues: at most about 60 s.
RECOVERY_SECONDS = 150.0


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    with postgres_database(template=postgres_template) as url:
        yield url


def _export() -> bytes:
    start = dt.datetime(2023, 1, 1, 7, tzinfo=dt.UTC)
    return zip_of(
        {
            f"runs/run-{n:03}.gpx": gpx_track(start + dt.timedelta(days=n), POINTS)
            for n in range(FILES)
        }
    )


def test_a_worker_killed_mid_import_is_replaced_and_every_file_is_stored_once(
    tmp_path: Path, postgres_url: str, shared_redis: SharedRedis
) -> None:
    staging = tmp_path / "shared-staging"
    settings = make_settings(
        tmp_path / "server",
        postgres_url,
        redis_url=shared_redis.url,
        redis_key_prefix=shared_redis.prefix,
        inprocess_workers=False,
        import_staging_dir=staging,
    )
    env = server_env(
        tmp_path / "worker",
        STRIDE_DATABASE_URL=postgres_url,
        STRIDE_REDIS_URL=shared_redis.url,
        STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
        STRIDE_IMPORT_STAGING_DIR=str(staging),
        STRIDE_HUEY_WORKERS="2",
    )
    data = _export()
    with (
        ServerThread(settings) as server,
        channel_as(server.address, ADMIN_TOKEN) as channel,
        WorkerProcess(env) as first,
    ):
        assert server.running is not None
        store = server.running.runtime.job_store
        first.wait_for("worker started")
        athlete = create_athlete(channel)
        job = upload(channel, athlete, "runs.zip", data)
        job_id = job.name.rsplit("/", 1)[1]

        deadline = time.monotonic() + 60
        while store.get(job_id).progress.completed < 20:
            assert (
                store.get(job_id).state == JobState.QUEUED or not store.get(job_id).state.terminal
            )
            assert time.monotonic() < deadline, "the import did not get going"
            time.sleep(0.02)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        killed_at = store.get(job_id).progress.completed
        assert killed_at < FILES, "the import was too far along to prove anything"

        metrics_port = _free_port()
        second_env = {**env, "STRIDE_WORKER_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}"}
        with WorkerProcess(second_env) as second:
            second.wait_for("worker started")
            events = watch(channel, job.name, after=0, timeout=RECOVERY_SECONDS)
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        ended = job_pb2_grpc.JobServiceStub(channel).GetJob(job_pb2.GetJobRequest(name=job.name))
        assert ended.state == job_pb2.JOB_STATE_SUCCEEDED, ended.error
        states = [e.state for e in events]
        assert job_pb2.JOB_STATE_QUEUED in states[states.index(job_pb2.JOB_STATE_RUNNING) :]
        assert ended.progress.done == ended.progress.total == FILES
        assert ended.result.created + ended.result.unchanged == FILES
        assert ended.result.failed == 0

        with server.running.runtime.database.read_primary() as session:
            stored = session.execute(
                select(func.count(), func.count(func.distinct(ActivityRow.external_id))).where(
                    ActivityRow.athlete_id == athlete.rsplit("/", 1)[1]
                )
            ).one()
            samples = session.scalar(select(func.count()).select_from(ActivitySampleRow))
        assert tuple(stored) == (FILES, FILES)
        assert samples == FILES * POINTS
        assert not any(staging.iterdir())  # the staged upload went with the job
        # The worker that finished it says so on its own /metrics (Prometheus scrapes it).
        assert 'stride_job_runs_total{kind="file_import"} 1.0' in scraped
        assert 'stride_job_duration_seconds_count{kind="file_import"} 1.0' in scraped


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

"""Strava sync with real processes: a server enqueueing on PostgreSQL + Redis and separate
`stride-worker` processes running the sync against the simulator, through a worker killed
mid-sync, a PostgreSQL restart and a Redis outage; and the embedded default (SQLite, the
server's own workers). Whatever happens, the job ends SUCCEEDED, its watchers see every
event once and in order, and every activity and its samples are stored exactly once.

The outage tests restart the shared PostgreSQL and Redis: each restores its service in a
`finally` and waits until it answers again before it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func
from stride.v1 import job_pb2, job_pb2_grpc, sync_pb2

from domain.jobs import Job, JobState
from storage.models import ActivityRow, ActivitySampleRow
from tests.strava_flow import (
    connect,
    connection_name,
    create_athlete,
    strava_env,
    strava_overrides,
    sync_stub,
    watch,
)
from tests.strava_sim import SimConfig, StravaSimulator
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    SharedRedis,
    channel_as,
    make_settings,
    postgres_available,
    postgres_database,
    redis_available,
    server_env,
)
from tests.test_worker import WorkerProcess

ACTIVITIES = 300
EMBEDDED_ACTIVITIES = 60
PAGE_SIZE = 50
# Far above what a sync spends: the budget never makes the job wait for a window.
NO_LIMITS = (1_000_000, 10_000_000)
# The lease (30 s) expires and the next sweep (every 30 s) re-enqueues: at most about 60 s.
RECOVERY_SECONDS = 150.0
# Retryable while a service restarts under the server.
TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _sim(activities: int) -> SimConfig:
    return SimConfig(
        seed=23,
        athletes=1,
        activities=activities,
        stream_step=40,
        rate_limits_enabled=False,
        overall_limits=NO_LIMITS,
        read_limits=NO_LIMITS,
    )


@pytest.fixture
def sim() -> Iterator[StravaSimulator]:
    with StravaSimulator(_sim(ACTIVITIES)) as simulator:
        yield simulator


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    with postgres_database(template=postgres_template) as url:
        yield url


# No scheduled syncs or reconciles: the only jobs are the ones a test starts.


@dataclass
class Cluster:
    """A server that only enqueues, and `stride-worker` processes consuming its queue."""

    server: ServerThread
    channel: grpc.Channel
    worker_env: dict[str, str]
    stack: ExitStack
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        worker = self.stack.enter_context(WorkerProcess(self.worker_env))
        self.workers.append(worker)
        worker.wait_for("worker started")
        return worker

    def job(self, job_name: str) -> Job:
        assert self.server.running is not None
        return self.server.running.runtime.job_store.get(job_name.rsplit("/", 1)[1])

    def worker_running(self, job_name: str) -> WorkerProcess:
        """The worker process holding the job's lease (`host:pid/thread`)."""
        owner = self.job(job_name).lease_owner
        assert owner is not None, "the job is not leased"
        pid = int(owner.split("/", 1)[0].rsplit(":", 1)[1])
        (worker,) = [w for w in self.workers if w.process.pid == pid]
        return worker


@contextmanager
def _cluster(
    tmp_path: Path, url: str, shared_redis: SharedRedis, sim: StravaSimulator, workers: int = 2
) -> Iterator[Cluster]:
    settings = make_settings(
        tmp_path / "server",
        url,
        redis_url=shared_redis.url,
        redis_key_prefix=shared_redis.prefix,
        inprocess_workers=False,
        **strava_overrides(sim, strava_page_size=PAGE_SIZE),
    )
    env = server_env(
        tmp_path / "worker",
        STRIDE_DATABASE_URL=url,
        STRIDE_REDIS_URL=shared_redis.url,
        STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
        STRIDE_HUEY_WORKERS="2",
        STRIDE_DB_CONNECT_ATTEMPTS="2",
        **strava_env(sim, strava_page_size=PAGE_SIZE),
    )
    with ExitStack() as stack:
        server = stack.enter_context(ServerThread(settings))
        assert server.running is not None
        assert server.running.workers is None
        channel = stack.enter_context(channel_as(server.address, ADMIN_TOKEN))
        cluster = Cluster(server, channel, env, stack)
        for _ in range(workers):
            cluster.start_worker()
        yield cluster


# Watching and checking ------------------------------------------------------------------


def _watch_through_outages(
    channel: grpc.Channel, job_name: str, seconds: float = RECOVERY_SECONDS
) -> tuple[list[Any], list[grpc.StatusCode]]:
    """Every event of the job until it ends, watching again after the last one seen when
    the stream breaks (as a client does while the database or Redis restarts); also the
    status codes of the broken streams."""
    events: list[Any] = []
    broken: list[grpc.StatusCode] = []
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"job did not end in {seconds} s; last events: {events[-3:]}"
        after = events[-1].sequence if events else 0
        try:
            events += watch(channel, job_name, after=after, timeout=remaining)
        except grpc.RpcError as exc:
            code = exc.code()
            if code not in TRANSIENT:
                raise
            broken.append(code)
            time.sleep(0.2)
            continue
        if events and events[-1].state in _ENDED:
            return events, broken


_ENDED = (
    job_pb2.JOB_STATE_SUCCEEDED,
    job_pb2.JOB_STATE_FAILED,
    job_pb2.JOB_STATE_CANCELLED,
)


def _requeued_by_sweeper(events: list[Any]) -> list[Any]:
    return [
        e
        for e in events
        if e.state == job_pb2.JOB_STATE_QUEUED
        and e.sequence > 1
        and "worker lost" in e.progress.message
    ]


def _assert_watched_in_order(events: list[Any]) -> None:
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(sequences) + 1)), sequences
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
    # A resumed sync starts from its last checkpoint: progress never goes back.
    done = [e.progress.done for e in events]
    assert done == sorted(done), done


def _stored(server: ServerThread, athlete: str) -> Counter[str]:
    """Samples stored per Strava activity id (an activity without samples counts 0), and
    every stored copy of an activity counted apart: a duplicate shows as a repeated id."""
    assert server.running is not None
    athlete_id = athlete.split("/")[1]
    with server.running.runtime.database.read_primary() as session:
        rows = (
            session.query(ActivityRow.id, ActivityRow.external_id)
            .filter_by(athlete_id=athlete_id, source="strava")
            .all()
        )
        counts = dict(
            session.query(ActivitySampleRow.activity_id, func.count())
            .filter(ActivitySampleRow.activity_id.in_([row.id for row in rows]))
            .group_by(ActivitySampleRow.activity_id)
            .all()
        )
    copies = Counter(str(row.external_id) for row in rows)
    duplicated = [key for key, n in copies.items() if n > 1]
    assert not duplicated, f"activities stored more than once: {duplicated}"
    return Counter({str(row.external_id): counts.get(row.id, 0) for row in rows})


def _expected(sim: StravaSimulator, strava_id: int) -> Counter[str]:
    expected: Counter[str] = Counter()
    for activity in sim.activities(strava_id):
        streams = sim.streams(activity)
        expected[str(activity.id)] = 0 if streams is None else len(set(streams.time))
    return expected


def _assert_exactly_once(
    server: ServerThread, athlete: str, sim: StravaSimulator, strava_id: int
) -> None:
    stored, expected = _stored(server, athlete), _expected(sim, strava_id)
    assert len(expected) == sim.config.activities
    assert sorted(stored) == sorted(expected), (
        f"missing {sorted(set(expected) - set(stored))[:10]},"
        f" unexpected {sorted(set(stored) - set(expected))[:10]}"
    )
    wrong = {k: (stored[k], expected[k]) for k in expected if stored[k] != expected[k]}
    assert not wrong, f"sample counts (stored, expected) differ: {wrong}"


def _result(channel: grpc.Channel, job_name: str) -> Any:
    return job_pb2_grpc.JobServiceStub(channel).GetJob(job_pb2.GetJobRequest(name=job_name))


def _connected_athlete(channel: grpc.Channel, sim: StravaSimulator) -> tuple[str, int]:
    athlete = create_athlete(channel)
    strava_id = sim.athlete_ids[0]
    ended = connect(channel, athlete, sim, strava_id)  # a pasted code
    assert ended.state == job_pb2.JOB_STATE_SUCCEEDED, ended
    return athlete, strava_id


def _start_sync(channel: grpc.Channel, athlete: str) -> str:
    job = sync_stub(channel).StartSync(sync_pb2.StartSyncRequest(name=connection_name(athlete)))
    return str(job.name)


def _poll(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _when_progress(cluster: Cluster, job_name: str, at_least: int, seconds: float = 60) -> int:
    """Wait until the running job has completed `at_least` items; returns how many."""
    seen = 0

    def reached() -> bool:
        nonlocal seen
        job = cluster.job(job_name)
        assert job.state not in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED), (
            f"the job ended ({job.state}) before the fault could be injected"
        )
        seen = job.progress.completed
        return seen >= at_least

    _poll(reached, seconds, f"{at_least} items synced")
    return seen


def _assert_incremental_sync_is_a_no_op(cluster: Cluster, athlete: str) -> None:
    """A new sync after the outage runs (workers and server work again) and writes nothing."""
    again = _start_sync(cluster.channel, athlete)
    events, _ = _watch_through_outages(cluster.channel, again, seconds=60)
    _assert_watched_in_order(events)
    result = _result(cluster.channel, again).result
    assert (result.created, result.updated, result.failed) == (0, 0, 0)


# Separate processes on PostgreSQL + Redis ---------------------------------------------------


def test_two_workers_sync_everything_exactly_once(
    tmp_path: Path, postgres_url: str, shared_redis: SharedRedis, sim: StravaSimulator
) -> None:
    with _cluster(tmp_path, postgres_url, shared_redis, sim) as cluster:
        athlete, strava_id = _connected_athlete(cluster.channel, sim)
        job_name = _start_sync(cluster.channel, athlete)
        events = watch(cluster.channel, job_name, timeout=120)
        _assert_watched_in_order(events)
        assert [e.state for e in events].count(job_pb2.JOB_STATE_RUNNING) >= 1
        job = _result(cluster.channel, job_name)
        expected = _expected(sim, strava_id)
        assert job.result.created == ACTIVITIES
        assert job.result.samples_written == sum(expected.values())
        assert (job.result.updated, job.result.failed, job.result.skipped) == (0, 0, 0)
        assert events[-1].progress.done == ACTIVITIES
        _assert_exactly_once(cluster.server, athlete, sim, strava_id)
        # Ran in a worker process, not in the server.
        ran = [w for w in cluster.workers for line in w.lines if line.get("event") == "task "
               "finished" and line.get("task") == "run_job"]  # fmt: skip
        assert ran, "no worker process ran a job"
        # Each activity fetched once in detail, and its streams once (manual ones have none).
        assert sim.count("activity") == ACTIVITIES
        recorded = [a for a in sim.activities(strava_id) if not a.manual]
        assert sim.count("activity.streams") == len(recorded)


def test_a_worker_killed_mid_sync_is_replaced_and_nothing_is_lost_or_doubled(
    tmp_path: Path, postgres_url: str, shared_redis: SharedRedis, sim: StravaSimulator
) -> None:
    with _cluster(tmp_path, postgres_url, shared_redis, sim) as cluster:
        athlete, strava_id = _connected_athlete(cluster.channel, sim)
        job_name = _start_sync(cluster.channel, athlete)
        with ThreadPoolExecutor(1) as pool:
            watching: Future[Any] = pool.submit(_watch_through_outages, cluster.channel, job_name)
            at = _when_progress(cluster, job_name, 20)
            victim = cluster.worker_running(job_name)
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait(timeout=10)
            assert at < 250, "the sync was too far along to prove anything"
            assert cluster.job(job_name).state == JobState.RUNNING
            cluster.start_worker()
            events, broken = watching.result(timeout=RECOVERY_SECONDS + 10)
        assert broken == []  # the server stayed up: one stream saw it all
        _assert_watched_in_order(events)
        # RUNNING, then back to QUEUED by the sweeper (the worker died), RUNNING again.
        assert len(_requeued_by_sweeper(events)) == 1, [e.state for e in events]
        job = cluster.job(job_name)
        assert job.attempts >= 2
        assert job.lease_owner is None or str(victim.process.pid) not in job.lease_owner
        result = _result(cluster.channel, job_name).result
        assert result.created + result.unchanged == ACTIVITIES
        assert (result.updated, result.failed) == (0, 0)
        _assert_exactly_once(cluster.server, athlete, sim, strava_id)


def _postgres_cluster_command(action: str) -> None:
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _restore_postgres() -> None:
    if not postgres_available():
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", os.listdir("/etc/postgresql")[0],
             "main", "start"],
            capture_output=True,
            timeout=60,
        )  # fmt: skip
    _poll(postgres_available, 60, "PostgreSQL to answer again")


def test_a_postgres_restart_mid_sync_loses_and_doubles_nothing(
    tmp_path: Path, postgres_url: str, shared_redis: SharedRedis, sim: StravaSimulator
) -> None:
    with _cluster(tmp_path, postgres_url, shared_redis, sim) as cluster:
        athlete, strava_id = _connected_athlete(cluster.channel, sim)
        job_name = _start_sync(cluster.channel, athlete)
        with ThreadPoolExecutor(1) as pool:
            watching: Future[Any] = pool.submit(_watch_through_outages, cluster.channel, job_name)
            _when_progress(cluster, job_name, 30)
            try:
                _postgres_cluster_command("restart")
            finally:
                _restore_postgres()
            events, _ = watching.result(timeout=RECOVERY_SECONDS + 10)
        _assert_watched_in_order(events)
        # The workers lived: the failed attempt's retry resumed the job, without waiting for
        # its lease to expire and the sweeper (unless every retry fell within the outage).
        gave_up = [
            line
            for w in cluster.workers
            for line in w.lines
            if line.get("event") == "task failed" and line.get("task") == "run_job"
        ]
        if not gave_up:
            assert _requeued_by_sweeper(events) == [], [e.state for e in events]
        result = _result(cluster.channel, job_name).result
        assert result.created + result.unchanged == ACTIVITIES
        assert (result.updated, result.failed) == (0, 0)
        _assert_exactly_once(cluster.server, athlete, sim, strava_id)
        _assert_incremental_sync_is_a_no_op(cluster, athlete)
        assert all(w.process.poll() is None for w in cluster.workers), "a worker exited"


def _restore_redis() -> None:
    if not redis_available():
        subprocess.run(REDIS_START, capture_output=True, timeout=30)
    _poll(redis_available, 30, "Redis to answer again")


def test_a_redis_outage_mid_sync_loses_and_doubles_nothing(
    tmp_path: Path, postgres_url: str, shared_redis: SharedRedis, sim: StravaSimulator
) -> None:
    # Slower Strava answers keep the sync running through the whole outage.
    sim.slow(0.01, match="/streams")
    with _cluster(tmp_path, postgres_url, shared_redis, sim) as cluster:
        athlete, strava_id = _connected_athlete(cluster.channel, sim)
        job_name = _start_sync(cluster.channel, athlete)
        with ThreadPoolExecutor(1) as pool:
            watching: Future[Any] = pool.submit(_watch_through_outages, cluster.channel, job_name)
            before = _when_progress(cluster, job_name, 30)
            try:
                subprocess.run(
                    ["redis-cli", "-p", "6379", "shutdown", "nosave"],
                    capture_output=True,
                    timeout=30,
                )
                _poll(lambda: not redis_available(), 10, "Redis to stop")
                down = time.monotonic()
                # The job goes on without Redis (its state is in the database)...
                _when_progress(cluster, job_name, before + 20)
                # ...and the outage lasts a few seconds.
                _poll(lambda: time.monotonic() - down >= 3, 10, "the outage")
            finally:
                _restore_redis()
            events, _ = watching.result(timeout=RECOVERY_SECONDS + 10)
        _assert_watched_in_order(events)
        result = _result(cluster.channel, job_name).result
        assert result.created + result.unchanged == ACTIVITIES
        assert (result.updated, result.failed) == (0, 0)
        _assert_exactly_once(cluster.server, athlete, sim, strava_id)
        _assert_incremental_sync_is_a_no_op(cluster, athlete)
        assert all(w.process.poll() is None for w in cluster.workers), "a worker exited"


# The embedded default ---------------------------------------------------------------------


def test_embedded_server_syncs_everything_exactly_once(tmp_path: Path) -> None:
    with StravaSimulator(_sim(EMBEDDED_ACTIVITIES)) as small:
        settings = make_settings(
            tmp_path / "data", None, **strava_overrides(small, strava_page_size=25)
        )
        with (
            ServerThread(settings) as server,
            channel_as(server.address, ADMIN_TOKEN) as channel,
        ):
            assert server.running is not None
            assert server.running.workers is not None
            athlete, strava_id = _connected_athlete(channel, small)
            job_name = _start_sync(channel, athlete)
            events = watch(channel, job_name, timeout=120)
            _assert_watched_in_order(events)
            result = _result(channel, job_name).result
            assert result.created == EMBEDDED_ACTIVITIES
            assert result.samples_written == sum(_expected(small, strava_id).values())
            assert (result.updated, result.failed, result.skipped) == (0, 0, 0)
            _assert_exactly_once(server, athlete, small, strava_id)

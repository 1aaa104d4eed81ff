"""Fixtures: every service test runs on PostgreSQL and on the embedded SQLite default."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from stride.v1 import activity_pb2_grpc, athlete_pb2_grpc

from core.logging import configure_logging
from core.telemetry import configure_tracing
from storage import migrate
from storage.database import Database, PoolOptions
from tests.support import (
    ADMIN_TOKEN,
    LogCapture,
    ServerThread,
    SharedRedis,
    TeeStream,
    channel_as,
    make_settings,
    postgres_available,
    postgres_database,
)

IN_CI = os.environ.get("CI") == "true"

# Logging and tracing are configured once per process, as the server's main() does.
LOG_STREAM = TeeStream(Path(tempfile.gettempdir()) / "stride-tests.log")
configure_logging("INFO", "json", stream=LOG_STREAM)
SPANS = InMemorySpanExporter()
configure_tracing(None, SimpleSpanProcessor(SPANS))


def pytest_report_header() -> str:
    return f"stride logs: {LOG_STREAM.path}"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    SPANS.clear()
    return SPANS


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every JSON log line written while the test runs."""
    capture = LogCapture()
    LOG_STREAM.captures.append(capture.stream)
    try:
        yield capture
    finally:
        LOG_STREAM.captures.remove(capture.stream)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated database that per-test databases are cloned from."""
    _require(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    with postgres_database() as url:
        database = Database(url, [], PoolOptions(size=1, max_overflow=0))
        migrate.upgrade(database.primary)
        database.dispose()
        yield url.rsplit("/", 1)[1]


def _require(available: bool, what: str) -> None:
    if not available:
        if IN_CI:
            pytest.fail(f"{what} is required in CI")
        pytest.skip(f"{what} is not available")


@pytest.fixture
def shared_redis() -> Iterator[SharedRedis]:
    """Keys under a fresh prefix, deleted afterwards; nothing else in Redis is touched."""
    token = uuid.uuid4().hex
    target = SharedRedis("redis://127.0.0.1:6379/0", f"stride-test-{token}:")
    client = redis.Redis.from_url(target.url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        _require(False, "Redis on 127.0.0.1:6379")
    try:
        yield target
    finally:
        # The prefix, and Huey's keys, whose names carry the prefix without punctuation.
        keys = list(client.scan_iter(match=f"*{token}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def redis_server_binary() -> None:
    """Tests that start and kill a Redis of their own need the redis-server binary."""
    _require(shutil.which("redis-server") is not None, "redis-server")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None means the embedded default (SQLite in the data directory)."""
    if request.param == "sqlite":
        yield None
        return
    template = request.getfixturevalue("postgres_template")
    with postgres_database(template=template) as url:
        yield url


@pytest.fixture
def server(database_url: str | None, tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_settings(tmp_path / "data", database_url)) as running:
        yield running


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    """A channel acting as the operator (admin token)."""
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        yield channel


@pytest.fixture
def athletes(channel: grpc.Channel) -> athlete_pb2_grpc.AthleteServiceStub:
    return athlete_pb2_grpc.AthleteServiceStub(channel)


@pytest.fixture
def activities(channel: grpc.Channel) -> activity_pb2_grpc.ActivityServiceStub:
    return activity_pb2_grpc.ActivityServiceStub(channel)

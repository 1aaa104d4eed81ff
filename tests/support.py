"""Test support: databases on the real PostgreSQL, a real server on an ephemeral port."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import psycopg
import redis
from google.rpc import error_details_pb2, status_pb2

from core.settings import Settings
from domain.activities import ActivityEdit, Measurements, Sample, Source
from domain.athletes import AthleteProfile
from server.app import RunningServer, start
from storage.database import Database
from storage.repositories.activities import ActivityRepository, SampleRepository
from storage.repositories.athletes import AthleteRepository

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("STRIDE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres")
ADMIN_TOKEN = "stride_admin_test-token"
PG_URL_TEMPLATE = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@dataclass(frozen=True)
class SharedRedis:
    """The Redis on 127.0.0.1:6379, isolated by a key prefix of the test's own."""

    url: str
    prefix: str


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres connect_timeout=2"):
            return True
    except psycopg.OperationalError:
        return False


def redis_available(url: str = "redis://127.0.0.1:6379/0") -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextmanager
def postgres_database(template: str | None = None) -> Iterator[str]:
    """A fresh database (optionally cloned from a template), dropped afterwards."""
    name = f"stride_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as admin:
        suffix = f" TEMPLATE {template}" if template else ""
        admin.execute(f"CREATE DATABASE {name}{suffix}")
    try:
        yield PG_URL_TEMPLATE.format(name=name)
    finally:
        with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for `python -m server` as a separate process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIDE_")}
    env.update(
        STRIDE_DATA_DIR=str(data_dir),
        STRIDE_LISTEN_ADDRESS="127.0.0.1:0",
        STRIDE_METRICS_ADDRESS="127.0.0.1:0",
        STRIDE_LOG_FORMAT="json",
        STRIDE_ADMIN_TOKEN=ADMIN_TOKEN,
        # Required with PostgreSQL (every replica must share it); harmless with SQLite.
        STRIDE_SECRET_KEY="test-secret",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
    )
    env.update(extra)
    return env


def wait_for_port(process: subprocess.Popen[str]) -> int:
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"server exited early with {process.wait()}")
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "server started":
            # Keep draining so a chatty server never blocks on a full pipe.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return int(event["port"])
    raise AssertionError("server did not start")


def make_settings(data_dir: Path, database_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "listen_address": "127.0.0.1:0",
        "metrics_address": None,
        "auto_migrate": True,
        "secret_key": "test-secret",
        "admin_token": ADMIN_TOKEN,
        "rate_limit_enabled": False,
        "auth_cache_seconds": 0,
        "health_check_interval_seconds": 0.5,
        "db_pool_size": 5,
        "db_max_overflow": 5,
        "db_connect_attempts": 2,
        "shutdown_grace_seconds": 1.0,
        "_env_file": None,
    }
    if database_url is not None:
        values["database_url"] = database_url
    values.update(overrides)
    return Settings(**values)


class ServerThread:
    """Runs the real server in its own event loop on a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.running: RunningServer | None = None

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.running = self._submit(start(self.settings)).result(timeout=60)
        return self

    def __exit__(self, *_: object) -> None:
        assert self.running is not None
        self._submit(self.running.stop(0.5)).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _submit(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    @property
    def address(self) -> str:
        assert self.running is not None
        return f"127.0.0.1:{self.running.port}"


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds `authorization: Bearer <token>` (and any extra metadata) to every call."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self._metadata = metadata

    def _with(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or []), *self._metadata])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with(details), requests)


@contextmanager
def channel_as(address: str, token: str | None, **extra: str) -> Iterator[grpc.Channel]:
    """A channel whose calls carry `token` (none when None) and `extra` metadata."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    metadata += list(extra.items())
    with grpc.insecure_channel(address) as raw:
        yield grpc.intercept_channel(raw, _Bearer(metadata)) if metadata else raw


class TeeStream(io.TextIOBase):
    """The log stream of the test process: a log file, plus whatever captures are active.

    Server threads log after a call's status has gone out, often once pytest has stopped
    capturing for that test; a file keeps those lines out of the test report."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.captures: list[io.StringIO] = []
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8")

    def write(self, text: str) -> int:
        with self._lock:
            self._file.write(text)
            for capture in self.captures:
                capture.write(text)
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def isatty(self) -> bool:
        return False


class LogCapture:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def wait_for(self, event: str, count: int = 1, seconds: float = 10) -> list[dict[str, Any]]:
        """The lines of `event` once there are at least `count`: a stream's access line is
        written when the server finishes the call, just after the client has seen it end."""
        deadline = time.monotonic() + seconds
        while len(found := self.events(event)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} {event!r} lines after {seconds} s")
            time.sleep(0.01)
        return found

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]
        return [line for line in lines if event is None or line.get("event") == event]


def status_of(error: grpc.RpcError) -> status_pb2.Status:
    """The google.rpc.Status carried in an error's trailers."""
    trailers: Any = cast(grpc.Call, error).trailing_metadata() or ()
    for key, value in trailers:
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    raise AssertionError("no grpc-status-details-bin trailer")


def detail(error: grpc.RpcError, kind: type[Any]) -> Any:
    found = [d for d in status_of(error).details if d.Is(kind.DESCRIPTOR)]
    assert len(found) == 1, f"expected one {kind.__name__}, got {len(found)}"
    message = kind()
    found[0].Unpack(message)
    return message


def violations(error: grpc.RpcError) -> dict[str, str]:
    bad_request = detail(error, error_details_pb2.BadRequest)
    return {v.field: v.description for v in bad_request.field_violations}


def reason(error: grpc.RpcError) -> str:
    return str(detail(error, error_details_pb2.ErrorInfo).reason)


def seed_activity_with_samples(database: Database, count: int) -> tuple[str, str]:
    """An athlete and an imported-like activity with `count` one-second samples.

    Ingestion arrives with the import and sync jobs; until then tests seed samples
    through the same repositories those jobs will use.
    """
    start_time = dt.datetime(2024, 5, 1, 7, 0, tzinfo=dt.UTC)
    with database.transaction() as session:
        athlete = AthleteRepository(session).add(
            AthleteProfile(display_name="Seeded", time_zone="Europe/Berlin"), None
        )
        activity = ActivityRepository(session).add(
            athlete.id,
            ActivityEdit(title="Track session", sport_type="Run"),
            Measurements(start_time=start_time, elapsed=dt.timedelta(seconds=count)),
            source=Source.FILE,
            external_id=f"seed-{uuid.uuid4().hex}.fit",
        )
        SampleRepository(session).replace(
            activity.id,
            [
                Sample(
                    time=start_time + dt.timedelta(seconds=i),
                    distance_meters=3.0 * i,
                    latitude=52.5 + i * 1e-5,
                    longitude=13.4,
                    altitude_meters=34.0,
                    heart_rate_bpm=120 + i % 40,
                    cadence_rpm=85,
                    power_watts=None,
                    speed_meters_per_second=3.0,
                )
                for i in range(count)
            ],
        )
    return athlete.id, activity.id


REAL_FIXTURES = Path(
    os.environ.get(
        "STRIDE_REAL_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
    )
)


def real_fixture(relative: str) -> Path:
    """A file of ../shared/fixtures/real: required under CI, else the test is skipped."""
    import pytest

    path = REAL_FIXTURES / relative
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real fixtures are required in CI: {path}")
        pytest.skip(f"the real fixtures are not at {REAL_FIXTURES}")
    return path


def error_events(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines at level error in a process's stderr."""
    events = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("level") == "error":
            events.append(event)
    return events

"""`stride-worker` as a process: it runs what a server enqueues (PostgreSQL + Redis, or the
server's SQLite queue beside it), under the enqueuing request's id and trace, stops
gracefully on SIGTERM, and refuses configurations where it would consume nothing useful.
On the embedded default the server's own in-process workers run the tasks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import trace

from core.telemetry import tracer
from runtime import open_runtime
from tasks.consumer import worker_identity
from tasks.diagnostics import ping
from tasks.queue import make_huey
from tests.support import (
    ROOT,
    LogCapture,
    ServerThread,
    SharedRedis,
    make_settings,
    postgres_database,
    server_env,
)


class WorkerProcess:
    """`python -m tasks` with its JSON log lines collected as they arrive."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tasks", *args],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                self.lines.append({"event": "raw", "text": line})

    def wait_for(self, event: str, seconds: float = 60, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.get("event") == event and all(line.get(k) == v for k, v in match.items()):
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {event!r} line {match or ''}; worker said: {self.lines[-20:]}")

    def stop(self, signum: int = signal.SIGTERM, seconds: float = 30) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=seconds)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _worker_env(
    data_dir: Path, url: str, shared_redis: SharedRedis, **extra: str
) -> dict[str, str]:
    return server_env(
        data_dir,
        STRIDE_DATABASE_URL=url,
        STRIDE_REDIS_URL=shared_redis.url,
        STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
        STRIDE_HUEY_WORKERS="2",
        **extra,
    )


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    with postgres_database(template=postgres_template) as url:
        yield url


def _trace_id(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def test_worker_runs_what_the_server_enqueues_under_its_request_and_trace(
    tmp_path: Path, postgres_url: str, shared_redis: SharedRedis
) -> None:
    settings = make_settings(
        tmp_path / "server",
        postgres_url,
        redis_url=shared_redis.url,
        redis_key_prefix=shared_redis.prefix,
    )
    env = _worker_env(tmp_path / "worker", postgres_url, shared_redis)
    with ServerThread(settings) as server, WorkerProcess(env) as worker:
        assert server.running is not None
        assert server.running.workers is None  # with Redis, workers are separate processes
        started = worker.wait_for("worker started")
        assert started["queue"].startswith("redis ")
        assert started["threads"] == 2
        with (
            tracer().start_as_current_span("rpc", kind=trace.SpanKind.SERVER) as rpc,
            structlog.contextvars.bound_contextvars(request_id="req-worker-1"),
        ):
            result = server.running.runtime.huey.submit(ping, time.time())
        answer = result.get(blocking=True, timeout=30)
        assert answer["worker"] == started["worker"] != worker_identity()
        assert answer["request_id"] == "req-worker-1"
        assert answer["trace_id"] == _trace_id(rpc)
        for event in ("task started", "ping", "task finished"):
            line = worker.wait_for(event, request_id="req-worker-1")
            assert line["trace_id"] == _trace_id(rpc)
            assert line["task"] == "ping"
            assert line["worker"].startswith(started["worker"] + "/Worker-")

        # The console script's health check: a ping answered by a running worker.
        pinged = subprocess.run(
            [str(Path(sys.executable).parent / "stride-worker"), "ping", "--timeout", "30"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pinged.returncode == 0, pinged.stderr
        assert json.loads(pinged.stdout)["worker"] == started["worker"]

        assert worker.stop(signal.SIGTERM) == 0
        worker.wait_for("worker stopped")


def test_sigterm_lets_the_running_task_finish_then_exits_zero(
    tmp_path: Path, postgres_url: str, shared_redis: SharedRedis
) -> None:
    env = _worker_env(
        tmp_path / "worker", postgres_url, shared_redis, STRIDE_SHUTDOWN_GRACE_SECONDS="20"
    )
    settings = make_settings(
        tmp_path / "client",
        postgres_url,
        redis_url=shared_redis.url,
        redis_key_prefix=shared_redis.prefix,
    )
    runtime = open_runtime(settings)
    try:
        with WorkerProcess(env) as worker:
            worker.wait_for("worker started")
            result = runtime.huey.submit(ping, time.time(), hold_seconds=30)
            worker.wait_for("task started", task="ping")
            signalled = time.monotonic()
            assert worker.stop(signal.SIGTERM) == 0
            # The task saw the stop (tasks.consumer.stopping) and returned early.
            assert time.monotonic() - signalled < 10
            answer = result.get(blocking=True, timeout=5)
            assert answer["cut_short"] is True
            worker.wait_for("task finished", task="ping")
            worker.wait_for("worker stopped")
            assert runtime.huey.pending_count() == 0
    finally:
        runtime.close()


def test_embedded_server_runs_tasks_in_its_own_workers(tmp_path: Path, logs: LogCapture) -> None:
    with ServerThread(make_settings(tmp_path / "data", None)) as server:
        assert server.running is not None
        assert server.running.workers is not None
        with (
            tracer().start_as_current_span("rpc", kind=trace.SpanKind.SERVER) as rpc,
            structlog.contextvars.bound_contextvars(request_id="req-embedded-1"),
        ):
            result = server.running.runtime.huey.submit(ping, time.time())
        answer = result.get(blocking=True, timeout=30)
    assert answer["worker"] == worker_identity()
    assert answer["request_id"] == "req-embedded-1"
    assert answer["trace_id"] == _trace_id(rpc)
    (line,) = [e for e in logs.events("ping") if e.get("request_id") == "req-embedded-1"]
    assert line["trace_id"] == _trace_id(rpc)


def test_worker_without_redis_consumes_the_servers_sqlite_queue(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir, None)
    with ServerThread(settings):
        pass  # the server creates the data directory, its database and its queue
    huey = make_huey(settings)
    try:
        with WorkerProcess(server_env(data_dir, STRIDE_HUEY_WORKERS="1")) as worker:
            started = worker.wait_for("worker started")
            assert started["queue"] == f"sqlite {data_dir / 'huey.db'}"
            answer = huey.submit(ping, time.time()).get(blocking=True, timeout=30)
            assert answer["worker"] == started["worker"]
            assert worker.stop(signal.SIGINT) == 0  # Ctrl-C stops gracefully too
    finally:
        huey.close()


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        # No Redis: the queue would be a SQLite file no server fills.
        ({}, ["STRIDE_REDIS_URL", "huey.db", "STRIDE_DATA_DIR"]),
        # Redis, but the embedded database: a fresh SQLite file no server writes to.
        ({"STRIDE_REDIS_URL": "redis://127.0.0.1:6379/0"}, ["STRIDE_DATABASE_URL", "stride.db"]),
    ],
)
def test_worker_refuses_to_consume_a_queue_or_database_of_its_own(
    tmp_path: Path, extra: dict[str, str], names: list[str]
) -> None:
    data_dir = tmp_path / "nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "tasks"],
        cwd=ROOT,
        env=server_env(data_dir, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("stride-worker: invalid configuration")
    for name in names:
        assert name in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


def test_ping_without_a_worker_fails_clearly(tmp_path: Path, shared_redis: SharedRedis) -> None:
    env = server_env(
        tmp_path,
        STRIDE_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none",
        STRIDE_REDIS_URL=shared_redis.url,
        STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
    )
    result = subprocess.run(
        [sys.executable, "-m", "tasks", "ping", "--timeout", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no worker answered within 1 s" in result.stderr

"""The server as a process: graceful shutdown on SIGTERM, readable configuration errors."""

from __future__ import annotations

import http.server
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from domain.names import activity_name
from storage import migrate
from storage.database import Database, PoolOptions
from tests.support import (
    ADMIN_TOKEN,
    ROOT,
    channel_as,
    seed_activity_with_samples,
    server_env,
    wait_for_port,
)


def test_sigterm_lets_an_in_flight_stream_finish_then_exits_zero(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = Database(f"sqlite:///{data_dir / 'stride.db'}", [], PoolOptions())
    migrate.upgrade(database.primary)
    athlete_id, activity_id = seed_activity_with_samples(database, 3000)
    database.dispose()

    process = subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=server_env(data_dir, STRIDE_SHUTDOWN_GRACE_SECONDS="30"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = wait_for_port(process)
        with channel_as(f"127.0.0.1:{port}", ADMIN_TOKEN) as channel:
            stub = activity_pb2_grpc.ActivityServiceStub(channel)
            stream = stub.StreamActivitySamples(
                activity_pb2.StreamActivitySamplesRequest(
                    name=activity_name(athlete_id, activity_id), chunk_size=10
                )
            )
            chunks = iter(cast(Iterator[activity_pb2.StreamActivitySamplesResponse], stream))
            received = len(next(chunks).samples)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the server is now draining; read the rest slowly
            assert process.poll() is None, "server exited with a call in flight"
            for chunk in chunks:
                received += len(chunk.samples)
                time.sleep(0.001)
            assert received == 3000
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _run_server(data_dir: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m server` to completion (for startup failures)."""
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env=server_env(data_dir, **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_describes_the_server_and_starts_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = _run_server(data_dir, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: stride-server")
    assert "STRIDE_" in result.stdout
    assert not data_dir.exists()  # no database, no secrets: nothing started
    unknown = _run_server(data_dir, "--bogus")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --bogus" in unknown.stderr


def test_invalid_setting_fails_with_a_message_naming_it(tmp_path: Path) -> None:
    result = _run_server(
        tmp_path, STRIDE_LISTEN_ADDRESS="localhost-without-port", STRIDE_DB_POOL_SIZE="many"
    )
    assert result.returncode == 2
    assert "STRIDE_LISTEN_ADDRESS" in result.stderr
    assert "HOST:PORT" in result.stderr
    assert "STRIDE_DB_POOL_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_fails_startup_clearly(tmp_path: Path) -> None:
    result = _run_server(
        tmp_path,
        STRIDE_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none",
        STRIDE_DB_CONNECT_ATTEMPTS="2",
        STRIDE_INPROCESS_WORKERS="true",  # PostgreSQL without Redis must choose explicitly
    )
    assert result.returncode == 1
    assert "cannot reach the database at postgresql+psycopg://postgres@127.0.0.1:1/none" in (
        result.stderr
    )


class _OtlpCollector(http.server.BaseHTTPRequestHandler):
    spans: list[Any] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                _OtlpCollector.spans.extend(scope.spans)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_spans_are_exported_over_otlp_when_configured(tmp_path: Path) -> None:
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpCollector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    endpoint = f"http://127.0.0.1:{collector.server_port}/v1/traces"
    process = subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=server_env(tmp_path, STRIDE_OTLP_ENDPOINT=endpoint),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = wait_for_port(process)
        traceparent = f"00-{trace_id}-b7ad6b7169203331-01"
        with channel_as(f"127.0.0.1:{port}", ADMIN_TOKEN, traceparent=traceparent) as channel:
            athlete_pb2_grpc.AthleteServiceStub(channel).ListAthletes(
                athlete_pb2.ListAthletesRequest()
            )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0  # exporting flushes at exit
    finally:
        if process.poll() is None:
            process.kill()
        collector.shutdown()
    ours = [s for s in _OtlpCollector.spans if s.trace_id.hex() == trace_id]
    names = {s.name for s in ours}
    assert "stride.v1.AthleteService/ListAthletes" in names
    assert any(name.startswith("db SELECT") for name in names)

"""Request ids, trace context, access logs, metrics, error reports and task propagation."""

from __future__ import annotations

import gzip
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sentry_sdk
import structlog
from huey.exceptions import TaskException
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from core.error_reporting import configure_sentry
from core.telemetry import tracer
from services.athletes import AthleteService
from tasks.context import capture, traced
from tasks.queue import InProcessWorkers, make_huey
from tests.support import (
    ADMIN_TOKEN,
    LogCapture,
    ServerThread,
    channel_as,
    make_settings,
    seed_activity_with_samples,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


@pytest.fixture
def ada(athletes: athlete_pb2_grpc.AthleteServiceStub) -> str:
    return athletes.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Ada", time_zone="UTC")
        )
    ).name


def test_request_id_is_kept_returned_and_logged(
    server: ServerThread, ada: str, logs: LogCapture
) -> None:
    with channel_as(server.address, ADMIN_TOKEN, **{"x-request-id": "req-42.a"}) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        _, call = stub.GetAthlete.with_call(athlete_pb2.GetAthleteRequest(name=ada))
    # A unary call returns it in its trailers (headers of its own would cost a second write).
    assert ("x-request-id", "req-42.a") in call.trailing_metadata()
    (line,) = [e for e in logs.events("rpc") if e["request_id"] == "req-42.a"]
    assert line["method"] == "/stride.v1.AthleteService/GetAthlete"
    assert line["code"] == "OK"
    assert line["principal"] == "admin"
    assert line["peer"].startswith("ipv4:127.0.0.1:")
    assert line["duration_ms"] > 0


def test_invalid_request_id_is_replaced(server: ServerThread, ada: str, logs: LogCapture) -> None:
    with channel_as(server.address, ADMIN_TOKEN, **{"x-request-id": "no spaces allowed"}) as ch:
        stub = athlete_pb2_grpc.AthleteServiceStub(ch)
        _, call = stub.GetAthlete.with_call(athlete_pb2.GetAthleteRequest(name=ada))
    returned = dict(call.trailing_metadata())["x-request-id"]
    assert returned != "no spaces allowed"
    assert len(returned) == 32
    assert [e["request_id"] for e in logs.events("rpc")][-1] == returned


def test_traceparent_continues_the_callers_trace_into_db_spans(
    server: ServerThread, ada: str, spans: InMemorySpanExporter, logs: LogCapture
) -> None:
    with channel_as(server.address, ADMIN_TOKEN, traceparent=TRACEPARENT) as channel:
        athlete_pb2_grpc.AthleteServiceStub(channel).GetAthlete(
            athlete_pb2.GetAthleteRequest(name=ada)
        )
    finished = [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x")
                == TRACE_ID]  # fmt: skip
    rpc = next(s for s in finished if s.kind == trace.SpanKind.SERVER)
    assert rpc.name == "stride.v1.AthleteService/GetAthlete"
    assert rpc.attributes is not None
    assert rpc.attributes["request.id"] == logs.events("rpc")[-1]["request_id"]
    assert rpc.parent is not None
    assert format(rpc.parent.span_id, "016x") == PARENT_SPAN
    db = [s for s in finished if s.name.startswith("db ")]
    assert db, "no database span joined the trace"
    assert all(s.parent is not None and s.parent.span_id == rpc.context.span_id for s in db)
    assert logs.events("rpc")[-1]["trace_id"] == TRACE_ID


def test_stream_log_line_counts_messages(
    server: ServerThread, activities: activity_pb2_grpc.ActivityServiceStub, logs: LogCapture
) -> None:
    assert server.running is not None
    athlete_id, activity_id = seed_activity_with_samples(server.running.database, 95)
    chunks = list(
        activities.StreamActivitySamples(
            activity_pb2.StreamActivitySamplesRequest(
                name=f"athletes/{athlete_id}/activities/{activity_id}", chunk_size=10
            )
        )
    )
    assert len(chunks) == 10
    line = logs.wait_for("rpc")[-1]
    assert line["method"] == "/stride.v1.ActivityService/StreamActivitySamples"
    assert line["messages_sent"] == 10


def test_secrets_never_reach_the_logs(
    server: ServerThread, athletes: athlete_pb2_grpc.AthleteServiceStub, ada: str,
    logs: LogCapture,
) -> None:  # fmt: skip
    created = athletes.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(parent=ada, access_token=athlete_pb2.AccessToken())
    )
    with channel_as(server.address, created.token) as channel:
        athlete_pb2_grpc.AthleteServiceStub(channel).GetAthlete(
            athlete_pb2.GetAthleteRequest(name=ada)
        )
    with (
        channel_as(server.address, "stride_at_wrong-secret-value") as channel,
        pytest.raises(grpc.RpcError),
    ):
        athlete_pb2_grpc.AthleteServiceStub(channel).GetAthlete(
            athlete_pb2.GetAthleteRequest(name=ada)
        )
    text = logs.text
    assert logs.events("rpc"), "nothing was logged"
    for secret in (created.token, ADMIN_TOKEN, "wrong-secret-value", "Bearer"):
        assert secret not in text


def _import_file(path: str) -> dict[str, str]:
    """A task body that reports the trace and request it ran under."""
    structlog.get_logger("test").info("importing", path=path)
    return {
        "trace_id": format(trace.get_current_span().get_span_context().trace_id, "032x"),
        "request_id": str(structlog.contextvars.get_contextvars().get("request_id", "")),
    }


def test_task_joins_the_trace_and_request_of_the_call_that_enqueued_it(
    tmp_path: Path, spans: InMemorySpanExporter, logs: LogCapture
) -> None:
    # The embedded queue: SQLite storage and worker threads, as the server runs them.
    huey = make_huey(make_settings(tmp_path, None))
    import_file = huey.task()(traced(_import_file))
    workers = InProcessWorkers(huey, workers=1)
    workers.start()
    try:
        with (
            tracer().start_as_current_span("rpc", kind=trace.SpanKind.SERVER) as rpc,
            structlog.contextvars.bound_contextvars(request_id="req-task-1"),
        ):
            result = import_file("a.gpx", stride_context=capture())
        ran_under = result.get(blocking=True, timeout=30)
    finally:
        workers.stop()
    # The worker thread has none of the caller's context variables, yet joined its trace.
    assert ran_under == {
        "trace_id": format(rpc.get_span_context().trace_id, "032x"),
        "request_id": "req-task-1",
    }
    task_span = next(s for s in spans.get_finished_spans() if s.name == "task _import_file")
    assert task_span.parent is not None
    assert task_span.parent.span_id == rpc.get_span_context().span_id
    (line,) = logs.events("importing")
    assert line["request_id"] == "req-task-1"


@pytest.fixture
def metrics_server(tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path / "data", None, metrics_address="127.0.0.1:0")
    with ServerThread(settings) as running:
        yield running


def test_metrics_endpoint_counts_rpcs_by_method_and_code(metrics_server: ServerThread) -> None:
    with channel_as(metrics_server.address, ADMIN_TOKEN) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        with pytest.raises(grpc.RpcError):
            stub.GetAthlete(athlete_pb2.GetAthleteRequest(name="athletes/nobody"))
    assert metrics_server.running is not None
    assert metrics_server.running.metrics is not None
    url = f"http://127.0.0.1:{metrics_server.running.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    assert (
        'stride_rpc_handled_total{code="NOT_FOUND",method="/stride.v1.AthleteService/GetAthlete"}'
        in body
    )
    assert "stride_rpc_duration_seconds_bucket" in body
    assert 'stride_dependency_up{dependency="database"} 1.0' in body
    assert 'stride_db_pool_checked_out{engine="primary"}' in body


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        _Collector.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def sentry_collector() -> Iterator[str]:
    """A real HTTP endpoint standing in for Sentry; yields its DSN."""
    _Collector.received = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://publickey@127.0.0.1:{httpd.server_port}/1"
    finally:
        sentry_sdk.init()  # back to no client
        httpd.shutdown()


def test_task_errors_are_reported(tmp_path: Path, sentry_collector: str) -> None:
    configure_sentry(sentry_collector, "test")
    huey = make_huey(make_settings(tmp_path, None))
    huey.immediate = True

    def failing_import(path: str) -> None:
        raise ValueError(f"cannot parse {path}")

    task = huey.task()(traced(failing_import))
    with structlog.contextvars.bound_contextvars(request_id="req-task-err"):
        result = task("bad.fit", stride_context=capture())
        with pytest.raises(TaskException):
            result.get()
    sentry_sdk.flush(timeout=5)
    envelopes = b"\n".join(_Collector.received).decode().replace(" ", "")
    assert "cannotparsebad.fit" in envelopes
    assert '"task":"failing_import"' in envelopes


def test_unhandled_error_is_internal_with_request_id_and_reported(
    server: ServerThread, ada: str, sentry_collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_sentry(sentry_collector, "test")

    def broken(self: AthleteService, athlete_id: str) -> None:
        raise RuntimeError("database driver exploded")

    monkeypatch.setattr(AthleteService, "get", broken)
    with (
        channel_as(server.address, ADMIN_TOKEN, **{"x-request-id": "req-boom"}) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        athlete_pb2_grpc.AthleteServiceStub(channel).GetAthlete(
            athlete_pb2.GetAthleteRequest(name=ada)
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error (request id req-boom)"
    assert "exploded" not in (caught.value.details() or "")
    sentry_sdk.flush(timeout=5)
    envelopes = b"\n".join(_Collector.received).decode()
    assert "database driver exploded" in envelopes
    assert '"request_id":"req-boom"' in envelopes.replace(" ", "")
    assert '"method":"/stride.v1.AthleteService/GetAthlete"' in envelopes.replace(" ", "")
    assert '"principal":"admin"' in envelopes.replace(" ", "")
    assert ADMIN_TOKEN not in envelopes

"""Requests a client can send but the server must not choke on: huge repeated fields,
thousands of invalid entries, undecodable bodies, more calls than the server takes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from tests.support import (
    ADMIN_TOKEN,
    LogCapture,
    ServerThread,
    channel_as,
    detail,
    make_settings,
    reason,
    seed_activity_with_samples,
    violations,
)

ACTIVITY = "athletes/someone/activities/something"


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_settings(tmp_path / "data", None)) as server:
        yield server


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    return cast(grpc.Call, error).code()


def _samples(channels: list[int]) -> activity_pb2.StreamActivitySamplesRequest:
    request = activity_pb2.StreamActivitySamplesRequest(name=ACTIVITY)
    request.channels.extend(cast(Any, channels))  # unknown enum values on purpose
    return request


def test_oversized_repeated_fields_are_refused_without_stalling_others(
    embedded: ServerThread,
) -> None:
    """20,000 invalid channels once froze the event loop for seconds, health checks too."""
    with channel_as(embedded.address, ADMIN_TOKEN) as channel:
        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        health: Any = health_pb2_grpc.HealthStub(channel)
        stop = threading.Event()

        def flood(_: int) -> set[tuple[grpc.StatusCode, str, str]]:
            answers = set()
            while not stop.is_set():
                try:
                    list(stub.StreamActivitySamples(_samples([0] * 20_000)))
                except grpc.RpcError as error:
                    answers.add((_code(error), reason(error), ",".join(violations(error))))
            return answers

        with ThreadPoolExecutor(4) as pool:
            floods = [pool.submit(flood, i) for i in range(3)]
            try:
                for _ in range(20):  # liveness keeps answering within a generous deadline
                    reply = health.Check(
                        health_pb2.HealthCheckRequest(service="liveness"), timeout=2
                    )
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
            finally:
                stop.set()
            answers = {answer for f in floods for answer in f.result()}
            assert answers == {(grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_TOO_LARGE", "channels")}


def test_thousands_of_violations_fit_in_the_trailers(embedded: ServerThread) -> None:
    """Every entry invalid, at the entry limit: still INVALID_ARGUMENT (not the client's
    RESOURCE_EXHAUSTED for oversized metadata), with the count of what was left out."""
    with channel_as(embedded.address, ADMIN_TOKEN) as channel:
        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.StreamActivitySamples(_samples([99] * 1000)))
    error = caught.value
    assert _code(error) == grpc.StatusCode.INVALID_ARGUMENT
    reported = violations(error)
    assert 0 < len(reported) < 1000
    assert all(field.startswith("channels[") for field in reported)
    info = detail(error, error_details_pb2.ErrorInfo)
    assert int(info.metadata["omitted_violations"]) == 1000 - len(reported)
    assert cast(grpc.Call, error).details().endswith(f"and {1000 - 5} more")


def test_a_huge_mask_path_is_reported_clipped(embedded: ServerThread) -> None:
    with channel_as(embedded.address, ADMIN_TOKEN) as channel:
        stub = athlete_pb2_grpc.AthleteServiceStub(channel)
        request = athlete_pb2.UpdateAthleteRequest(
            athlete=athlete_pb2.Athlete(name="athletes/someone"),
            update_mask=field_mask_pb2.FieldMask(paths=["x" * 8192, "y" * 8192]),
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.UpdateAthlete(request)
    assert _code(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    description = violations(caught.value)["update_mask.paths"]
    assert description.startswith("'xxx")
    assert len(description) <= 300


def _handled(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value("stride_rpc_handled_total", {"method": method, "code": code})
    return value or 0.0


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("/stride.v1.AthleteService/GetAthlete", "unary"),
        ("/stride.v1.ActivityService/StreamActivitySamples", "server_stream"),
        ("/stride.v1.ActivityService/UploadActivityFile", "client_stream"),
    ],
)
def test_undecodable_bodies_are_invalid_argument_logged_and_counted(
    embedded: ServerThread, logs: LogCapture, method: str, kind: str
) -> None:
    before = _handled(method, "INVALID_ARGUMENT")
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # a field whose length runs past the end
    metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"), ("x-request-id", "garbage-1"))
    with grpc.insecure_channel(embedded.address) as channel, pytest.raises(grpc.RpcError) as caught:
        _send(channel, method, kind, garbage, metadata)
    assert _code(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == "UNDECODABLE_REQUEST"
    (line,) = [e for e in logs.wait_for("rpc") if e["request_id"] == "garbage-1"]
    assert (line["method"], line["code"], line["principal"]) == (
        method,
        "INVALID_ARGUMENT",
        "admin",
    )
    assert "Traceback" not in logs.text
    assert _handled(method, "INVALID_ARGUMENT") == before + 1


def _send(
    channel: grpc.Channel,
    method: str,
    kind: str,
    body: bytes,
    metadata: tuple[tuple[str, str | bytes], ...],
) -> None:
    """Send raw bytes as the request (no serializer: bytes go through as they are)."""
    if kind == "unary":
        channel.unary_unary(method)(body, metadata=metadata)  # type: ignore[call-arg]
    elif kind == "server_stream":
        list(channel.unary_stream(method)(body, metadata=metadata))  # type: ignore[call-arg]
    else:
        channel.stream_unary(method)(iter([body]), metadata=metadata)  # type: ignore[call-arg]


def test_the_call_cap_spares_health_and_answers_like_other_limits(
    tmp_path: Path, logs: LogCapture
) -> None:
    settings = make_settings(tmp_path / "data", None, max_concurrent_rpcs=1)
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
        assert server.running is not None
        athlete_id, activity_id = seed_activity_with_samples(server.running.database, 20_000)
        options = [("grpc.http2.bdp_probe", 0)]
        with grpc.insecure_channel(server.address, options=options) as raw:
            holder = activity_pb2_grpc.ActivityServiceStub(raw).StreamActivitySamples(
                activity_pb2.StreamActivitySamplesRequest(
                    name=f"athletes/{athlete_id}/activities/{activity_id}", chunk_size=50
                ),
                metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
            )
            next(cast(Iterator[Any], holder))  # one call in progress, left unread
            health: Any = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            athletes = athlete_pb2_grpc.AthleteServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                athletes.GetAthlete(
                    athlete_pb2.GetAthleteRequest(name="athletes/nobody"),
                    metadata=(("x-request-id", "over-the-cap"),),
                )
            cast("grpc.Future[Any]", holder).cancel()
    error = caught.value
    assert _code(error) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(error) == "SERVER_BUSY"
    assert detail(error, error_details_pb2.RetryInfo).retry_delay.seconds >= 1
    (line,) = [e for e in logs.events("rpc") if e["request_id"] == "over-the-cap"]
    assert line["code"] == "RESOURCE_EXHAUSTED"

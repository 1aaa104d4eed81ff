"""Streams ended by the client, held open, or run heavy: the server stays up and fair."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from domain.names import activity_name, athlete_name
from storage import migrate
from storage.database import Database, PoolOptions
from tests.support import (
    ADMIN_TOKEN,
    ROOT,
    LogCapture,
    ServerThread,
    channel_as,
    detail,
    make_settings,
    reason,
    seed_activity_with_samples,
    server_env,
    wait_for_port,
)

Samples = Iterator[activity_pb2.StreamActivitySamplesResponse]
# No BDP probing: the stream's flow-control window stays at 64 KiB, so a client that stops
# reading makes the server's writes wait, as a slow or abandoned client would.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


def _seed(data_dir: Path, samples: int, athletes: int = 1) -> list[str]:
    """Activities (one per athlete) with `samples` samples in the embedded database."""
    data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(f"sqlite:///{data_dir / 'stride.db'}", [], PoolOptions())
    try:
        migrate.upgrade(database.primary)
        return [
            activity_name(*seed_activity_with_samples(database, samples)) for _ in range(athletes)
        ]
    finally:
        database.dispose()


@contextmanager
def _server_process(data_dir: Path, **settings: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=server_env(data_dir, **settings),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _request(name: str, chunk_size: int = 100) -> activity_pb2.StreamActivitySamplesRequest:
    return activity_pb2.StreamActivitySamplesRequest(name=name, chunk_size=chunk_size)


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    return cast(grpc.Call, error).code()


def test_many_client_ended_streams_leave_the_server_serving(tmp_path: Path) -> None:
    """Cancelled and timed-out streams, many at once: the process survives and answers."""
    data_dir = tmp_path / "data"
    (name,) = _seed(data_dir, 5000)
    with _server_process(data_dir, STRIDE_MAX_STREAMS_PER_PRINCIPAL="100") as process:
        address = f"127.0.0.1:{wait_for_port(process)}"
        with channel_as(address, ADMIN_TOKEN) as channel:
            stub = activity_pb2_grpc.ActivityServiceStub(channel)

            def cancel_after_first(_: int) -> None:
                stream = stub.StreamActivitySamples(_request(name))
                next(cast(Samples, stream))
                cast("grpc.Future[Any]", stream).cancel()

            def run_into_deadline(i: int) -> grpc.StatusCode:
                try:
                    for _ in stub.StreamActivitySamples(_request(name, 10), timeout=0.02 * i):
                        pass
                except grpc.RpcError as error:
                    return _code(error)
                return grpc.StatusCode.OK

            with ThreadPoolExecutor(16) as pool:
                list(pool.map(cancel_after_first, range(60)))
                codes = set(pool.map(run_into_deadline, range(1, 61)))
            assert grpc.StatusCode.DEADLINE_EXCEEDED in codes
            assert process.poll() is None, f"server died with {process.returncode}"
            health: Any = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            whole = list(stub.StreamActivitySamples(_request(name, 1000)))
            assert sum(len(chunk.samples) for chunk in whole) == 5000
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_sigterm_with_streams_outliving_the_grace_period_exits_zero(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (name,) = _seed(data_dir, 20_000)
    with _server_process(data_dir, STRIDE_SHUTDOWN_GRACE_SECONDS="0.5") as process:
        address = f"127.0.0.1:{wait_for_port(process)}"
        with ExitStack() as stack:
            raw = stack.enter_context(grpc.insecure_channel(address, options=SMALL_WINDOW))
            stub = activity_pb2_grpc.ActivityServiceStub(raw)
            metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
            streams = []
            for _ in range(6):  # opened, one message read, then left unread
                stream = stub.StreamActivitySamples(_request(name, 50), metadata=metadata)
                next(cast(Samples, stream))
                streams.append(stream)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            for stream in streams:
                cast("grpc.Future[Any]", stream).cancel()


@pytest.fixture
def two_athletes(tmp_path: Path) -> tuple[Path, list[str]]:
    data_dir = tmp_path / "data"
    return data_dir, _seed(data_dir, 3000, athletes=2)


def _athlete_token(channel: grpc.Channel, activity: str) -> str:
    athletes = athlete_pb2_grpc.AthleteServiceStub(channel)
    parent = athlete_name(activity.split("/")[1])
    token = athletes.CreateAccessToken(
        athlete_pb2.CreateAccessTokenRequest(
            parent=parent, access_token=athlete_pb2.AccessToken(display_name="streams")
        )
    )
    return token.token


def test_a_principal_holds_at_most_its_stream_slots(two_athletes: tuple[Path, list[str]]) -> None:
    data_dir, (mine, theirs) = two_athletes
    settings = make_settings(data_dir, None, max_streams_per_principal=2)
    with ServerThread(settings) as server, ExitStack() as stack:
        admin = stack.enter_context(channel_as(server.address, ADMIN_TOKEN))
        tokens = [_athlete_token(admin, mine), _athlete_token(admin, theirs)]
        channels = [
            stack.enter_context(grpc.insecure_channel(server.address, options=SMALL_WINDOW))
            for _ in tokens
        ]
        stubs = [activity_pb2_grpc.ActivityServiceStub(channel) for channel in channels]
        metadata = [(("authorization", f"Bearer {token}"),) for token in tokens]

        held = []
        for _ in range(2):
            stream = stubs[0].StreamActivitySamples(_request(mine, 50), metadata=metadata[0])
            next(cast(Samples, stream))
            held.append(stream)
        with pytest.raises(grpc.RpcError) as refused:
            list(stubs[0].StreamActivitySamples(_request(mine), metadata=metadata[0]))
        assert _code(refused.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason(refused.value) == "TOO_MANY_STREAMS"
        assert detail(refused.value, error_details_pb2.RetryInfo).retry_delay.seconds >= 1

        # Another athlete is not affected by the first one's streams.
        other = list(stubs[1].StreamActivitySamples(_request(theirs, 1000), metadata=metadata[1]))
        assert sum(len(chunk.samples) for chunk in other) == 3000

        # A slot comes back when its stream ends.
        cast("grpc.Future[Any]", held.pop()).cancel()
        _wait_until_accepted(lambda: list(stubs[0].StreamActivitySamples(
            _request(mine, 1000), metadata=metadata[0]
        )))  # fmt: skip
        for stream in held:
            cast("grpc.Future[Any]", stream).cancel()


def _wait_until_accepted(call: Any) -> None:
    """Retry while the server is still releasing a cancelled stream's slot."""
    for _ in range(100):
        try:
            call()
            return
        except grpc.RpcError as error:
            if reason(error) != "TOO_MANY_STREAMS":
                raise
            threading.Event().wait(0.05)
    raise AssertionError("the slot of a cancelled stream was never released")


def test_a_stream_the_client_stops_reading_ends_deadline_exceeded(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (name,) = _seed(data_dir, 20_000)
    settings = make_settings(
        data_dir, None, stream_idle_timeout_seconds=0.5, max_streams_per_principal=1
    )
    with ServerThread(settings) as server, ExitStack() as stack:
        raw = stack.enter_context(grpc.insecure_channel(server.address, options=SMALL_WINDOW))
        stub = activity_pb2_grpc.ActivityServiceStub(raw)
        metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
        stream = stub.StreamActivitySamples(_request(name, 50), metadata=metadata)
        received = len(next(cast(Samples, stream)).samples)
        threading.Event().wait(1.5)  # well past the idle timeout

        def read_on() -> None:
            nonlocal received
            for chunk in cast(Samples, stream):
                received += len(chunk.samples)

        # A client that reads on learns that the server ended the stream...
        with pytest.raises(grpc.RpcError) as ended:
            read_on()
        assert _code(ended.value) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert reason(ended.value) == "STREAM_IDLE"
        assert received < 20_000
        # ...and the stream's slot (this principal's only one) is free again.
        _wait_until_accepted(
            lambda: list(stub.StreamActivitySamples(_request(name, 5000), metadata=metadata))
        )


def test_stalled_streams_hold_their_slots_not_the_server(tmp_path: Path) -> None:
    """Opening streams and never reading them, again and again, gets a principal no more
    than its slots: the server and other callers are unaffected."""
    data_dir = tmp_path / "data"
    (name,) = _seed(data_dir, 20_000)
    settings = make_settings(
        data_dir,
        None,
        stream_idle_timeout_seconds=0.3,
        max_streams_per_principal=2,
        max_concurrent_rpcs=6,
    )
    with ServerThread(settings) as server, ExitStack() as stack:
        raw = stack.enter_context(grpc.insecure_channel(server.address, options=SMALL_WINDOW))
        stub = activity_pb2_grpc.ActivityServiceStub(raw)
        metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
        stalled, refused = [], []
        for _ in range(10):
            try:
                stream = stub.StreamActivitySamples(_request(name, 50), metadata=metadata)
                next(cast(Samples, stream))
                stalled.append(stream)
            except grpc.RpcError as error:
                refused.append(reason(error))
            threading.Event().wait(0.4)  # each stalled stream has gone idle by now
        assert len(stalled) == 2
        assert set(refused) == {"TOO_MANY_STREAMS"}
        # Other calls still get through the call cap.
        admin = stack.enter_context(channel_as(server.address, ADMIN_TOKEN))
        athletes = athlete_pb2_grpc.AthleteServiceStub(admin)
        assert athletes.GetAthlete(athlete_pb2.GetAthleteRequest(name=athlete_name(
            name.split("/")[1]
        ))).display_name  # fmt: skip
        for stream in stalled:
            cast("grpc.Future[Any]", stream).cancel()


def test_streams_are_charged_by_the_bytes_they_send(two_athletes: tuple[Path, list[str]]) -> None:
    """A principal's stream spends its bucket by size; another principal keeps its own."""
    data_dir, (mine, theirs) = two_athletes
    settings = make_settings(
        data_dir,
        None,
        rate_limit_enabled=True,
        rate_limit_principal_burst=100,
        rate_limit_principal_per_second=0.001,
        rate_limit_ip_burst=10_000,
        rate_limit_stream_bytes_per_token=1024,
    )
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as admin:
        tokens = [_athlete_token(admin, mine), _athlete_token(admin, theirs)]
        with channel_as(server.address, tokens[0]) as channel:
            stub = activity_pb2_grpc.ActivityServiceStub(channel)
            request = _request(mine, 100)
            request.channels.append(activity_pb2.SAMPLE_CHANNEL_HEART_RATE)
            chunks = list(stub.StreamActivitySamples(request))
            streamed = sum(chunk.ByteSize() for chunk in chunks)
            spent_by_stream = streamed // 1024
            assert 20 <= spent_by_stream < 99  # the sizes this test relies on
            unary_left = _calls_until_limited(channel, mine)
        # 100 tokens: one for the stream's call, one per KiB streamed, the rest for calls.
        assert unary_left == 100 - 1 - spent_by_stream
        with channel_as(server.address, tokens[1]) as channel:
            assert _calls_until_limited(channel, theirs) == 100


def _calls_until_limited(channel: grpc.Channel, activity: str) -> int:
    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    for count in range(1000):
        try:
            stub.GetActivity(activity_pb2.GetActivityRequest(name=activity))
        except grpc.RpcError as error:
            if _code(error) != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return count
    raise AssertionError("never limited")


def test_a_cancelled_stream_is_logged_cancelled(tmp_path: Path, logs: LogCapture) -> None:
    data_dir = tmp_path / "data"
    (name,) = _seed(data_dir, 20_000)
    with ServerThread(make_settings(data_dir, None)) as server, ExitStack() as stack:
        raw = stack.enter_context(grpc.insecure_channel(server.address, options=SMALL_WINDOW))
        stub = activity_pb2_grpc.ActivityServiceStub(raw)
        metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"), ("x-request-id", "cancel-me"))
        stream = stub.StreamActivitySamples(_request(name, 50), metadata=metadata)
        next(cast(Samples, stream))
        cast("grpc.Future[Any]", stream).cancel()
        (line,) = logs.wait_for("rpc")
    assert (line["request_id"], line["code"]) == ("cancel-me", "CANCELLED")
    assert line["messages_sent"] >= 1

"""Several server processes under one supervisor (STRIDE_PROCESSES=2): one port served by
both, one metrics scrape for both, graceful stop of all, restarts, and startup refusals.

Real processes throughout: `python -m server` as an operator starts it, real sockets, and
prometheus_client's own files read back to see what each process did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc, common_pb2

from domain.names import activity_name
from server.supervisor import PortReservation, RestartPolicy
from storage import migrate
from storage.database import Database, PoolOptions
from tests.support import (
    ADMIN_TOKEN,
    ROOT,
    SharedRedis,
    error_events,
    seed_activity_with_samples,
    server_env,
)

CALLS = 40
# A channel of its own connection: by default gRPC shares one connection between the channels
# of a process that have the same target, and one connection reaches one server process.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
ADMIN: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


class Supervised:
    """`python -m server` with STRIDE_PROCESSES=2, its log lines collected as they come."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.metrics_root = tmp_path / "tmp"  # the supervisor's private metrics dir goes here
        self.metrics_root.mkdir(exist_ok=True)
        env = server_env(
            tmp_path / "data",
            STRIDE_PROCESSES="2",
            STRIDE_RATE_LIMIT_ENABLED="false",
            STRIDE_HEALTH_CHECK_INTERVAL_SECONDS="0.5",
            TMPDIR=str(self.metrics_root),
            **settings,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and parsed.get("event") == event:
                found.append(parsed)
        return found

    def wait_for(self, event: str, count: int = 1, seconds: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        with self._changed:
            while len(found := self.events(event)) < count:
                if not self._reader.is_alive():
                    raise AssertionError(f"exited ({self.process.poll()}) before {event!r}")
                if not self._changed.wait(timeout=deadline - time.monotonic()):
                    raise AssertionError(f"no {event!r} within {seconds} s:\n{self.text()}")
            return found

    def started(self) -> dict[str, Any]:
        """The supervisor's own "server started" line (the one with `processes`)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = [e for e in self.wait_for("server started") if "processes" in e]
            if mine:
                return mine[0]
            with self._changed:
                self._changed.wait(timeout=1)
        raise AssertionError(f"the supervisor did not start:\n{self.text()}")

    def text(self) -> str:
        return "".join(self.lines)

    def metrics_dir(self) -> Path:
        (path,) = self.metrics_root.glob("stride-metrics-*")
        return path

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[list[Supervised]]:
    """Supervisors started by a test; killed (with their children) if the test did not stop
    them."""
    started: list[Supervised] = []
    yield started
    for running in started:
        pids = []
        for event in running.events("server started"):
            pids += event.get("pids", [])
        running.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (not merely a zombie waiting for its parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _check(port: int) -> int:
    """One health check on a fresh channel (a fresh connection, so the kernel picks a
    process for it)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return int(reply.status)


def _checks(port: int, count: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _check(port), range(count)))
    assert statuses == [health_pb2.HealthCheckResponse.SERVING] * count


def _scrape(port: int) -> dict[str, float]:
    """`name{labels}` → value of every sample in one scrape of the supervisor."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def _health_checks_handled(samples: dict[str, float]) -> float:
    return sum(
        value
        for key, value in samples.items()
        if key.startswith("stride_rpc_handled_total{") and "Health" in key
    )


def _per_process(directory: Path, kind: str, name: str) -> dict[int, float]:
    """Sum of `name` in each process's own file (`counter_<pid>.db`, ...), as written by it."""
    totals: dict[int, float] = {}
    for path in directory.glob(f"{kind}_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, value, _timestamp, _pos in values:
            if json.loads(key)[1] == name:
                totals[pid] = totals.get(pid, 0.0) + value
    return totals


# --- one port, one scrape -----------------------------------------------------------------


def _both_processes_serve_one_port(running: Supervised) -> dict[str, Any]:
    started = running.started()
    port = started["port"]
    pids = started["pids"]
    assert started["processes"] == 2
    assert len(set(pids)) == 2
    # Each child announced itself on the same, concrete port.
    children = [e for e in running.events("server started") if "processes" not in e]
    assert sorted(e["pid"] for e in children) == sorted(pids)
    assert {e["port"] for e in children} == {port}
    assert port != 0
    # Only the first process runs the in-process workers.
    assert sorted(e["inprocess_workers"] > 0 for e in children) == [False, True]
    assert [e["process"] for e in children if e["inprocess_workers"]] == [0]

    _checks(port, CALLS)

    # One scrape counts the calls of both processes...
    samples = _scrape(started["metrics_port"])
    assert _health_checks_handled(samples) == CALLS
    # ...which both answered: each one's own file holds its share.
    per_pid = _per_process(running.metrics_dir(), "counter", "stride_rpc_handled_total")
    assert set(per_pid) == set(pids)
    assert all(count > 0 for count in per_pid.values()), per_pid
    assert sum(per_pid.values()) == CALLS
    # Gauges combine as their mode says: nothing in flight once the calls are done.
    assert samples["stride_rpc_in_flight{}"] == 0
    return started


def test_both_processes_serve_one_port_and_one_scrape_sums_them(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    running = Supervised(tmp_path)
    supervised.append(running)
    started = _both_processes_serve_one_port(running)
    metrics_dir = running.metrics_dir()
    assert running.stop() == 0
    assert not any(_alive(pid) for pid in started["pids"])
    assert not metrics_dir.exists()  # the supervisor removed its private directory


def test_processes_share_redis_and_one_port(
    tmp_path: Path, supervised: list[Supervised], shared_redis: SharedRedis
) -> None:
    running = Supervised(
        tmp_path,
        STRIDE_REDIS_URL=shared_redis.url,
        STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
    )
    supervised.append(running)
    started = _both_processes_serve_one_port(running)
    children = [e for e in running.events("server started") if "processes" not in e]
    assert {e["queue"] for e in children} == {children[0]["queue"]}
    assert "redis" in children[0]["queue"].lower()
    # Ctrl-C: SIGINT, to the supervisor alone (the processes have process groups of their
    # own), stops all of them as gracefully as SIGTERM.
    assert running.stop(signal.SIGINT) == 0
    assert {e["signal"] for e in running.events("shutting down") if "signal" in e} == {"SIGINT"}
    assert not any(_alive(pid) for pid in started["pids"])


def test_a_write_through_one_process_is_read_at_once_through_the_other(
    tmp_path: Path, supervised: list[Supervised], shared_redis: SharedRedis
) -> None:
    """Both processes hold the activity in their in-process cache; a write through either
    is what every connection reads next, whichever process serves it."""
    running = Supervised(
        tmp_path,
        STRIDE_REDIS_URL=shared_redis.url,
        STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
    )
    supervised.append(running)
    started = running.started()
    address = f"127.0.0.1:{started['port']}"
    with contextlib.ExitStack() as stack:
        stubs = [
            activity_pb2_grpc.ActivityServiceStub(
                stack.enter_context(grpc.insecure_channel(address, options=OWN_CONNECTION))
            )
            for _ in range(12)  # one connection each: spread over both processes
        ]
        athlete = athlete_pb2_grpc.AthleteServiceStub(
            stack.enter_context(grpc.insecure_channel(address))
        ).CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name="Ada", time_zone="UTC")
            ),
            metadata=ADMIN,
        )
        new = activity_pb2.Activity(
            title="Title 0",
            sport_type=common_pb2.SPORT_TYPE_RUN,
            elapsed_time=duration_pb2.Duration(seconds=600),
        )
        new.start_time.FromJsonString("2025-05-01T07:00:00Z")
        name = (
            stubs[0]
            .CreateActivity(
                activity_pb2.CreateActivityRequest(parent=athlete.name, activity=new),
                metadata=ADMIN,
            )
            .name
        )
        get = activity_pb2.GetActivityRequest(name=name)
        for round_ in range(1, 6):
            for stub in stubs:  # warm: every process caches the current title
                stub.GetActivity(get, metadata=ADMIN)
                stub.GetActivity(get, metadata=ADMIN)
            writer = stubs[round_ % len(stubs)]
            writer.UpdateActivity(
                activity_pb2.UpdateActivityRequest(
                    activity=activity_pb2.Activity(name=name, title=f"Title {round_}"),
                    update_mask=field_mask_pb2.FieldMask(paths=["title"]),
                ),
                metadata=ADMIN,
            )
            titles = {stub.GetActivity(get, metadata=ADMIN).title for stub in stubs}
            assert titles == {f"Title {round_}"}
        # Both processes answered from their own cache along the way.
        hits = _per_process(running.metrics_dir(), "counter", "stride_cache_requests_total")
        assert sorted(hits) == sorted(started["pids"])
        assert all(count > 0 for count in hits.values()), hits
    assert running.stop() == 0


# --- stopping -----------------------------------------------------------------------------


STREAMS = 16
SAMPLES = 3000
# A connection whose receive window stays at 64 KiB (no growing it to the measured bandwidth):
# a stream of SAMPLES is more than that, so the server cannot finish it before it is read.
SLOW_READER = [*OWN_CONNECTION, ("grpc.http2.bdp_probe", 0)]


def test_sigterm_lets_in_flight_calls_of_every_process_finish(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = Database(f"sqlite:///{data_dir / 'stride.db'}", [], PoolOptions())
    migrate.upgrade(database.primary)
    athlete_id, activity_id = seed_activity_with_samples(database, SAMPLES)
    database.dispose()

    running = Supervised(
        tmp_path,
        STRIDE_SHUTDOWN_GRACE_SECONDS="30",
        STRIDE_MAX_STREAMS_PER_PRINCIPAL="64",
    )
    supervised.append(running)
    started = running.started()
    address = f"127.0.0.1:{started['port']}"
    request = activity_pb2.StreamActivitySamplesRequest(
        name=activity_name(athlete_id, activity_id), chunk_size=10
    )
    with contextlib.ExitStack() as stack:
        streams = []
        for _ in range(STREAMS):  # one connection each: spread over both processes
            channel = stack.enter_context(grpc.insecure_channel(address, options=SLOW_READER))
            stub = activity_pb2_grpc.ActivityServiceStub(channel)
            chunks = iter(
                cast(
                    Iterator[activity_pb2.StreamActivitySamplesResponse],
                    stub.StreamActivitySamples(request, metadata=ADMIN),
                )
            )
            streams.append((chunks, len(next(chunks).samples)))
        # Every process has calls in flight (each one's own gauge says so).
        in_flight = _per_process(running.metrics_dir(), "gauge_livesum", "stride_rpc_in_flight")
        assert sorted(in_flight) == sorted(started["pids"])
        assert all(count > 0 for count in in_flight.values()), in_flight
        assert sum(in_flight.values()) == STREAMS

        running.process.send_signal(signal.SIGTERM)
        running.wait_for("shutting down", count=3)  # the supervisor and both children
        assert running.process.poll() is None, "exited with calls in flight"
        for chunks, received in streams:
            for chunk in chunks:
                received += len(chunk.samples)
            assert received == SAMPLES
    assert running.process.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in started["pids"])
    stopped = running.events("server process stopped")
    assert sorted(e["pid"] for e in stopped) == sorted(started["pids"])
    assert {e["exit_code"] for e in stopped} == {0}


# --- restarts -----------------------------------------------------------------------------


def test_a_killed_process_is_restarted_and_the_port_keeps_answering(
    tmp_path: Path, supervised: list[Supervised]
) -> None:
    running = Supervised(tmp_path)
    supervised.append(running)
    started = running.started()
    port = started["port"]
    victim = started["pids"][1]
    os.kill(victim, signal.SIGKILL)

    (exited,) = running.wait_for("server process exited unexpectedly")
    assert exited["pid"] == victim
    assert exited["exit_code"] == -signal.SIGKILL
    assert exited["level"] == "error"
    _checks(port, 10)  # the survivor serves alone meanwhile

    (restarted,) = running.wait_for("server process restarted")
    assert restarted["process"] == 1
    assert restarted["pid"] not in started["pids"]
    assert _alive(restarted["pid"])
    _checks(port, CALLS)
    per_pid = _per_process(running.metrics_dir(), "counter", "stride_rpc_handled_total")
    assert per_pid.get(restarted["pid"], 0) > 0  # the replacement took its share

    assert running.stop() == 0
    assert not any(_alive(pid) for pid in [*started["pids"], restarted["pid"]])


# --- refusing to start --------------------------------------------------------------------


def _run(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=server_env(tmp_path / "data", STRIDE_PROCESSES="2", **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_busy_port_is_refused_by_name(tmp_path: Path) -> None:
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        result = _run(tmp_path, STRIDE_LISTEN_ADDRESS=f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = error_events(result.stderr)
    assert error["event"] == "cannot start"
    assert error["error"] == f"address 127.0.0.1:{port} is already in use"
    assert "server started" not in result.stderr  # no child was started


def test_a_process_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    result = _run(
        tmp_path,
        STRIDE_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none",
        STRIDE_DB_CONNECT_ATTEMPTS="1",
        STRIDE_REDIS_URL="redis://127.0.0.1:6379/0",  # PostgreSQL needs a shared queue
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = error_events(result.stderr)
    # Each child says why; the supervisor says it gave up.
    assert any("cannot reach the database" in e.get("error", "") for e in errors), errors
    failed = [e for e in errors if e["event"] == "a server process failed to start; stopping"]
    assert len(failed) == 1
    assert failed[0]["exit_code"] == 1
    assert '"server started"' not in result.stderr


# --- the parts that decide ------------------------------------------------------------------


def test_restart_delays_double_until_children_exit_too_often() -> None:
    policy = RestartPolicy()
    delays = [policy.delay_after_exit(now) for now in (0.0, 1.0, 2.0, 3.0)]
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert policy.delay_after_exit(4.0) is None  # the fifth exit within a minute
    # Exits older than the window are forgotten: an occasional crash restarts at once.
    assert RestartPolicy().delay_after_exit(0.0) == 0.5
    spaced = RestartPolicy()
    assert [spaced.delay_after_exit(minute * 61.0) for minute in range(10)] == [0.5] * 10


def test_the_reserved_port_is_concrete_and_shared_only_by_reuse_port() -> None:
    reservation = PortReservation.take("127.0.0.1:0", refuse_busy=True)
    try:
        assert reservation.port != 0
        assert reservation.address == f"127.0.0.1:{reservation.port}"
        # A program without SO_REUSEPORT cannot take the port while it is reserved...
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", reservation.port))
        # ...while a server process (gRPC with SO_REUSEPORT) can listen on it.
        with socket.socket() as child:
            child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            child.bind(("127.0.0.1", reservation.port))
            child.listen()
    finally:
        reservation.close()

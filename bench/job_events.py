"""Job event latency: a worker's `JobStore.record_progress` to a WatchJob client receiving it.

A job is created and leased by a bench worker; the worker then records progress (the commit
plus the bus publish a real task does), first paced (the latency phase: `--events` events,
one every `--interval` seconds, after a few warm-up events), then back to back (`--burst`
events: the rate a single watcher sustains). The watcher is a separate client process
streaming WatchJob from a real server. Latency is publish call start (worker) to message
decoded (watcher), both on CLOCK_MONOTONIC, which is system-wide on Linux.

* embedded: SQLite and the in-process bus; the server runs in this process and the worker
  is a thread of it using the server's own JobStore, as the in-process workers do (the
  in-process bus reaches only its own process).
* postgresql+redis (when both answer on 127.0.0.1): a temporary database, Redis pub/sub
  under a unique key prefix, the server as its own process and the worker as another
  process with its own Runtime, as `stride-worker` runs.

The baseline of each is the bare bus round trip measured the same way and with the same
process layout (publish on the bus -> the subscription's `get` returns), without storage
or gRPC.

    .venv/bin/python -m bench.job_events [--events 500] [--interval 0.02] [--burst 1000]
    .venv/bin/python -m bench --only job-events
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import queue
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import grpc
import redis
from redis.asyncio import Redis as AsyncRedis
from stride.v1 import job_pb2

from bench.processes import ADMIN_TOKEN as SERVER_ADMIN_TOKEN
from bench.processes import stride_server
from core.job_bus import InProcessBus, JobEventBus, RedisBus
from core.logging import configure_logging
from domain import names
from domain.athletes import AthleteProfile
from domain.jobs import JobEvent, JobKind, JobState, Progress
from runtime import open_runtime
from services.jobs import JobStore
from storage import migrate
from storage.database import Database, PoolOptions
from storage.repositories.athletes import AthleteRepository
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    make_settings,
    postgres_available,
    postgres_database,
    redis_available,
)

WATCH = "/stride.v1.JobService/WatchJob"
REDIS_URL = "redis://127.0.0.1:6379/0"
OWNER = "bench-worker"
WARMUP = 20
PAUSE = 0.5  # between phases, so the paced events do not queue behind anything
TIMEOUT = 120.0
BUS_JOB = "bench-bus-job"

# (sequence, call start ns, call end ns) per event the worker sent
Sent = list[tuple[int, int, int]]
# sequence -> ns the watcher had it
Received = dict[int, int]


@dataclass(frozen=True)
class Options:
    events: int = 500
    interval: float = 0.02
    burst: int = 1000

    def phases(self) -> list[tuple[int, float]]:
        """(count, interval) of the warm-up, latency and back-to-back phases."""
        return [(WARMUP, self.interval), (self.events, self.interval), (self.burst, 0.0)]


def _now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _send(emit: Callable[[int], int], phases: list[tuple[int, float]]) -> list[Sent]:
    """Calls `emit(i)` (which returns the event's sequence) for each phase, paced at its
    interval (0: back to back)."""
    done: list[Sent] = []
    index = 0
    for number, (count, interval) in enumerate(phases):
        if number:
            time.sleep(PAUSE)
        sent: Sent = []
        next_at = time.perf_counter()
        for _ in range(count):
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            start = _now_ns()
            sequence = emit(index)
            sent.append((sequence, start, _now_ns()))
            index += 1
        done.append(sent)
    return done


def _store_emitter(store: JobStore, job_id: str, total: int) -> Callable[[int], int]:
    def emit(index: int) -> int:
        progress = Progress(completed=index + 1, total=total)
        return store.record_progress(job_id, OWNER, progress).sequence

    return emit


def _bus_emitter(bus: JobEventBus, total: int) -> Callable[[int], int]:
    def emit(index: int) -> int:
        event = JobEvent(
            job_id=BUS_JOB,
            sequence=index + 1,
            time=dt.datetime.now(dt.UTC),
            state=JobState.RUNNING,
            progress=Progress(completed=index + 1, total=total),
        )
        bus.publish(event)
        return event.sequence

    return emit


def _work(store: JobStore, job_id: str, phases: list[tuple[int, float]]) -> list[Sent]:
    """The worker: progress events, then SUCCEEDED (not measured), which ends the watch."""
    total = sum(count for count, _ in phases)
    sent = _send(_store_emitter(store, job_id, total), phases)
    store.transition(job_id, JobState.SUCCEEDED, owner=OWNER)
    return sent


# --- the worker as its own process (PostgreSQL + Redis) ----------------------------------


@dataclass(frozen=True)
class WorkerJob:
    data_dir: str
    database_url: str
    redis_url: str
    prefix: str
    job_id: str  # "" publishes bare events on the bus instead
    phases: list[tuple[int, float]]


def _worker_process(job: WorkerJob, go: Event, out: Queue[Any]) -> None:
    settings = make_settings(
        Path(job.data_dir),
        job.database_url,
        redis_url=job.redis_url,
        redis_key_prefix=job.prefix,
        inprocess_workers=False,
    )
    runtime = open_runtime(settings)
    try:
        out.put(("ready", None))
        if not go.wait(TIMEOUT):
            return
        if job.job_id:
            out.put(("sent", _work(runtime.job_store, job.job_id, job.phases)))
        else:
            total = sum(count for count, _ in job.phases)
            out.put(("sent", _send(_bus_emitter(runtime.job_bus, total), job.phases)))
    finally:
        runtime.close()


# --- the watcher: a WatchJob client in its own process ----------------------------------


def _watcher_process(address: str, token: str, name: str, after: int, out: Queue[Any]) -> None:
    received: Received = {}
    ready = False
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_stream(
            WATCH,
            request_serializer=job_pb2.WatchJobRequest.SerializeToString,
            response_deserializer=job_pb2.JobEvent.FromString,
        )
        request = job_pb2.WatchJobRequest(name=name, after_sequence=after)
        metadata = (("authorization", f"Bearer {token}"),)
        for event in call(request, metadata=metadata, timeout=TIMEOUT):
            now = _now_ns()
            if event.heartbeat:  # the first message: the watch is open
                if not ready:
                    ready = True
                    out.put(("ready", None))
                continue
            received[event.sequence] = now
    out.put(("received", received))


def _expect(out: Queue[Any], kind: str, alive: list[SpawnProcess]) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            got_kind, value = out.get(timeout=0.2)
        except queue.Empty:
            if any(not process.is_alive() for process in alive):
                raise RuntimeError(f"a bench process died before sending {kind!r}") from None
            continue
        if got_kind == kind:
            return value
    raise RuntimeError(f"no {kind!r} within {TIMEOUT:g} s")


@contextmanager
def _spawned(target: Callable[..., None], *args: Any) -> Iterator[tuple[SpawnProcess, Queue[Any]]]:
    context = multiprocessing.get_context("spawn")
    out: Queue[Any] = context.Queue()
    process = context.Process(target=target, args=(*args, out), daemon=True)
    process.start()
    try:
        yield process, out
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


# --- results ------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    call_ms: list[float] = field(default_factory=list)
    after_call_ms: list[float] = field(default_factory=list)
    lost: int = 0
    burst_lost: int = 0
    published_per_s: float = float("nan")
    received_per_s: float = float("nan")
    burst_p50_ms: float = float("nan")

    def p(self, q: float) -> float:
        return _percentile(self.latencies_ms, q)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _row(label: str, sent: list[Sent], received: Received) -> Row:
    _, paced, burst = sent
    row = Row(label)
    for sequence, start, end in paced:
        row.call_ms.append((end - start) / 1e6)
        if sequence in received:
            row.latencies_ms.append((received[sequence] - start) / 1e6)
            row.after_call_ms.append((received[sequence] - end) / 1e6)
        else:
            row.lost += 1
    if burst:
        first, last = burst[0][1], burst[-1][2]
        row.published_per_s = len(burst) / ((last - first) / 1e9)
        got = [received[seq] for seq, _, _ in burst if seq in received]
        row.burst_lost = len(burst) - len(got)
        if got:
            row.received_per_s = len(got) / ((max(got) - first) / 1e9)
        row.burst_p50_ms = _percentile(
            [(received[seq] - start) / 1e6 for seq, start, _ in burst if seq in received], 0.5
        )
    return row


# --- the bare bus round trip (the baseline) -----------------------------------------------


async def _bus_round_trip(
    bus: JobEventBus, publish: Callable[[], Awaitable[list[Sent]]], expect: int
) -> tuple[list[Sent], Received]:
    subscription = await bus.subscribe(BUS_JOB)
    received: Received = {}

    async def receive() -> None:
        while len(received) < expect:
            event = await subscription.get(5.0)
            if event is None:
                return  # lost events: nothing for 5 s
            received[event.sequence] = _now_ns()

    try:
        sent, _ = await asyncio.gather(publish(), receive())
    finally:
        await subscription.close()
    return sent, received


def _in_process_baseline(options: Options) -> Row:
    bus = InProcessBus()
    phases = options.phases()
    total = sum(count for count, _ in phases)

    async def publish() -> list[Sent]:
        await asyncio.sleep(PAUSE)
        return await asyncio.to_thread(_send, _bus_emitter(bus, total), phases)

    sent, received = asyncio.run(_bus_round_trip(bus, publish, total))
    return _row("baseline: in-process bus", sent, received)


def _redis_baseline(options: Options, worker: WorkerJob) -> Row:
    phases = options.phases()
    total = sum(count for count, _ in phases)
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    with _spawned(_worker_process, worker, go) as (process, out):
        _expect(out, "ready", [process])

        async def run() -> tuple[list[Sent], Received]:
            publisher = redis.Redis.from_url(worker.redis_url)
            subscriber = AsyncRedis.from_url(worker.redis_url)
            bus = RedisBus(publisher, lambda: subscriber, worker.prefix)

            async def publish() -> list[Sent]:
                await asyncio.sleep(PAUSE)
                go.set()
                sent: list[Sent] = await asyncio.to_thread(_expect, out, "sent", [process])
                return sent

            try:
                return await _bus_round_trip(bus, publish, total)
            finally:
                await subscriber.aclose()
                publisher.close()

        sent, received = asyncio.run(run())
    return _row("baseline: Redis pub/sub", sent, received)


# --- through the server -------------------------------------------------------------------


def _new_job(database: Database, store: JobStore) -> tuple[str, str, int]:
    """A leased RUNNING job of a new athlete: (job name, job id, its last sequence)."""
    with database.transaction() as session:
        athlete = AthleteRepository(session).add(
            AthleteProfile(display_name="Bench", time_zone="Europe/Oslo"), None
        )
    job, _ = store.create(athlete.id, JobKind.RECOMPUTE, {})
    started = store.start(job.id, OWNER)
    assert started is not None
    return names.job_name(athlete.id, job.id), job.id, started.last_event_sequence


def _embedded(options: Options, workdir: Path) -> Row:
    # The server runs in this process: its info lines (tasks, access) stay out of the table.
    configure_logging("WARNING", "console", sys.stderr)
    settings = make_settings(workdir / "embedded", None)
    with ServerThread(settings) as server:
        assert server.running is not None
        store = server.running.runtime.job_store
        name, job_id, last = _new_job(server.running.runtime.database, store)
        with _spawned(_watcher_process, server.address, ADMIN_TOKEN, name, last) as (
            watcher,
            out,
        ):
            _expect(out, "ready", [watcher])
            time.sleep(PAUSE)
            sent = _work(store, job_id, options.phases())
            received: Received = _expect(out, "received", [watcher])
    return _row("embedded: SQLite + in-process bus", sent, received)


def _distributed(options: Options, workdir: Path, database_url: str, prefix: str) -> Row:
    database = Database(database_url, [], PoolOptions(size=1, max_overflow=0))
    try:
        migrate.upgrade(database.primary)
        name, job_id, last = _new_job(database, JobStore(database))
    finally:
        database.dispose()
    settings = {
        "STRIDE_DATA_DIR": str(workdir / "server"),
        "STRIDE_DATABASE_URL": database_url,
        "STRIDE_REDIS_URL": REDIS_URL,
        "STRIDE_REDIS_KEY_PREFIX": prefix,
    }
    worker = WorkerJob(
        str(workdir / "worker"), database_url, REDIS_URL, prefix, job_id, options.phases()
    )
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    with (
        stride_server(settings) as address,
        _spawned(_worker_process, worker, go) as (publisher, worker_out),
        _spawned(_watcher_process, address, SERVER_ADMIN_TOKEN, name, last) as (watcher, out),
    ):
        _expect(worker_out, "ready", [publisher])
        _expect(out, "ready", [watcher])
        time.sleep(PAUSE)
        go.set()
        sent: list[Sent] = _expect(worker_out, "sent", [publisher])
        received: Received = _expect(out, "received", [watcher])
    return _row("PostgreSQL + Redis pub/sub", sent, received)


@contextmanager
def _redis_prefix() -> Iterator[str]:
    """A key prefix of this run's own; its keys (and Huey's, which carry the token without
    punctuation) are deleted afterwards."""
    token = uuid.uuid4().hex
    try:
        yield f"stride-bench-{token}:"
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"*{token}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def measure(options: Options) -> list[tuple[Row, Row]]:
    """(baseline, Stride) per backend."""
    pairs: list[tuple[Row, Row]] = []
    with tempfile.TemporaryDirectory(prefix="stride-job-events-") as tmp:
        workdir = Path(tmp)
        pairs.append((_in_process_baseline(options), _embedded(options, workdir)))
        if not (postgres_available() and redis_available()):
            print("  (PostgreSQL or Redis not reachable on 127.0.0.1: embedded only)")
            return pairs
        with ExitStack() as stack:
            url = stack.enter_context(postgres_database())
            prefix = stack.enter_context(_redis_prefix())
            bus_worker = WorkerJob(
                str(workdir / "bus-worker"), url, REDIS_URL, prefix, "", options.phases()
            )
            baseline = _redis_baseline(options, bus_worker)
            pairs.append((baseline, _distributed(options, workdir, url, prefix)))
    return pairs


def report(options: Options, pairs: list[tuple[Row, Row]]) -> None:
    header = (
        f"  {'path':<34} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'lost':>4}"
        f" {'call':>6} {'after':>6} | {'sent/s':>7} {'recv/s':>7} {'p50 ms':>7} {'lost':>4}"
    )
    print(header)
    for pair in pairs:
        for row in pair:
            print(
                f"  {row.label:<34} {row.p(0.5):>7.2f} {row.p(0.99):>7.2f}"
                f" {max(row.latencies_ms, default=float('nan')):>7.2f} {row.lost:>4}"
                f" {_percentile(row.call_ms, 0.5):>6.2f}"
                f" {_percentile(row.after_call_ms, 0.5):>6.2f}"
                f" | {row.published_per_s:>7.0f} {row.received_per_s:>7.0f}"
                f" {row.burst_p50_ms:>7.1f} {row.burst_lost:>4}"
            )
        base, real = pair
        print(
            f"  {'':<34} ratio to baseline: p50 {real.p(0.5) / base.p(0.5):.0f}x,"
            f" p99 {real.p(0.99) / base.p(0.99):.0f}x; storage + gRPC"
            f" {1 - base.p(0.5) / real.p(0.5):.0%} of the p50"
        )
    worst = max(real.p(0.99) for _, real in pairs)
    verdict = "met" if worst < 50 else "NOT met"
    print(f"  target p50/p99 < 50 ms through the server: {verdict} (worst p99 {worst:.1f} ms)")


def run(options: Options | None = None) -> None:
    options = options or Options()
    print(
        f"Job events: worker record_progress -> WatchJob client; {options.events} events paced"
        f" every {options.interval * 1000:g} ms (after {WARMUP} warm-up), then"
        f" {options.burst} back to back"
    )
    print(
        "  left: paced latency, publish call start -> watcher has it; call / after: p50 of the"
        " record_progress (or bus publish) call itself / of the rest, from its return"
    )
    print("  right: back to back: worker's events/s, watcher's events/s, latency p50, lost")
    report(options, measure(options))


def main(argv: list[str] | None = None) -> None:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m bench.job_events",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--interval", type=float, default=defaults.interval)
    parser.add_argument("--burst", type=int, default=defaults.burst)
    args = parser.parse_args(argv)
    run(Options(events=args.events, interval=args.interval, burst=args.burst))


if __name__ == "__main__":
    main()

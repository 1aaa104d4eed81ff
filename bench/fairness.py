"""Fairness: the latency athlete B sees while athlete A runs heavy sample streams.

One SQLite database, two athletes with their own access tokens: A with a few activities
of ~100k samples, B with one small activity. The server runs as its own process, with
rate limiting on and its default limits. B makes sequential GetActivity calls at a fixed
pace (10 a second, well inside its own limits), first alone (the baseline) and then while
A, from a separate client process, keeps N full StreamActivitySamples streams going (each
re-opened when it ends or is refused). Reported: B's p50/p99/max alone and loaded, and
their ratio; A's refused streams and samples/s; the server's CPU use.

`--server-root` runs the server (and the seeding) from another checkout, to compare
before and after a change: `git worktree add /tmp/stride-before <commit>`. A's client reads
every stream to its end rather than cancelling it (old servers crashed on client
cancellation), and a server that dies during the run is reported, not waited for.
B calls over ::1 and A over 127.0.0.1, so each has its own per-address rate limit
(`--addresses shared` puts both on 127.0.0.1, also for machines without IPv6 loopback).

    .venv/bin/python -m bench.fairness [--server-root PATH] [--streams 50] [--seconds 10]
    .venv/bin/python -m bench --only fairness
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from stride.v1 import activity_pb2, athlete_pb2

from bench.processes import ADMIN_METADATA, ADMIN_TOKEN, ROOT

GET = "/stride.v1.ActivityService/GetActivity"
STREAM = "/stride.v1.ActivityService/StreamActivitySamples"
CREATE_TOKEN = "/stride.v1.AthleteService/CreateAccessToken"
B_TIMEOUT_SECONDS = 120.0  # B's calls waited up to 85 s on the old code; never cancel sooner
RETRY_LABELS = {
    "server": "after their RetryInfo delay",
    "trailer": "after their retry-after trailer (whole seconds)",
    "immediate": "at once",
}
SEED_SCRIPT = Path(__file__).with_name("fairness_seed.py")


@dataclass(frozen=True)
class Options:
    server_root: Path = ROOT
    streams: int = 50
    seconds: float = 10.0
    warmup: float = 3.0
    activities: int = 3
    samples: int = 100_000
    b_rate: float = 10.0
    retry: str = "server"  # a key of RETRY_LABELS
    addresses: str = "separate"  # B calls from ::1, A from 127.0.0.1; or both from 127.0.0.1


class ServerCrashed(RuntimeError):
    pass


class Server:
    """`python -m server` from `root`, its stderr kept in a file (and its tail in memory)."""

    def __init__(self, root: Path, data_dir: Path, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRIDE_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(root), str(root / "gen")]),
            STRIDE_DATA_DIR=str(data_dir),
            # Both loopback addresses (127.0.0.1 and ::1), so the athletes can come from
            # different client addresses and not share the per-address rate limit.
            STRIDE_LISTEN_ADDRESS="localhost:0",
            STRIDE_METRICS_ADDRESS="off",
            STRIDE_LOG_FORMAT="json",
            STRIDE_ADMIN_TOKEN=ADMIN_TOKEN,
            STRIDE_SECRET_KEY="bench-secret",
            STRIDE_SHUTDOWN_GRACE_SECONDS="1",
        )
        # STRIDE_* variables of the bench run reach the server (to try other limits).
        env.update({k: v for k, v in os.environ.items() if k.startswith("STRIDE_")})
        self.log_path = log_path
        self.tail: deque[str] = deque(maxlen=30)
        self._port: int | None = None
        self._started = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "server"],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            for line in self.process.stderr:
                log.write(line)
                self.tail.append(line.rstrip())
                if self._port is None and '"server started"' in line:
                    try:
                        self._port = int(json.loads(line)["port"])
                    except (json.JSONDecodeError, KeyError, ValueError):
                        continue
                    self._started.set()
        self._started.set()  # exited: stop waiting for the port

    def port(self, timeout: float = 60.0) -> int:
        self._started.wait(timeout)
        if self._port is None:
            self.stop()
            raise ServerCrashed(f"server did not start (exit {self.process.poll()})")
        return self._port

    def exit_code(self) -> int | None:
        return self.process.poll()

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (all threads), from /proc."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def _seed(root: Path, database: Path, options: Options) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIDE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "gen")])
    argv = [
        sys.executable,
        str(SEED_SCRIPT),
        f"sqlite:///{database}",
        str(options.activities),
        str(options.samples),
    ]
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{done.stderr[-3000:]}")
    return cast(dict[str, Any], json.loads(done.stdout.strip().splitlines()[-1]))


def _token(address: str, athlete_id: str) -> str:
    with grpc.insecure_channel(address) as channel:
        create = channel.unary_unary(
            CREATE_TOKEN,
            request_serializer=athlete_pb2.CreateAccessTokenRequest.SerializeToString,
            response_deserializer=athlete_pb2.AccessToken.FromString,
        )
        request = athlete_pb2.CreateAccessTokenRequest(
            parent=f"athletes/{athlete_id}",
            access_token=athlete_pb2.AccessToken(display_name="bench"),
        )
        return str(create(request, metadata=ADMIN_METADATA, timeout=30).token)


def _status(error: grpc.RpcError) -> tuple[str, dict[str, float]]:
    """("CODE REASON" with the ErrorInfo reason if any, delays to retry after in seconds:
    "server" from RetryInfo, "trailer" from the retry-after trailer, where present)."""
    call = cast(grpc.Call, error)
    code = call.code().name
    reason, delay = "", {}
    for key, value in call.trailing_metadata() or ():
        if key == "retry-after":
            delay["trailer"] = float(value)
        elif key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason = info.reason
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
                    delay["server"] = retry.retry_delay.ToTimedelta().total_seconds()
    return (f"{code} {reason}".strip(), delay)


# --- athlete B: sequential paced GetActivity calls, in this process ---------------------


@dataclass
class Phase:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0
    server_cpu_seconds: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def server_cpu(self) -> float:
        return self.server_cpu_seconds / self.wall_seconds if self.wall_seconds else float("nan")


def _athlete_b(address: str, token: str, activity: str, options: Options, server: Server) -> Phase:
    metadata = (("authorization", f"Bearer {token}"),)
    request = activity_pb2.GetActivityRequest(name=activity)
    interval = 1.0 / options.b_rate
    phase = Phase()
    with grpc.insecure_channel(address) as channel:
        get: Callable[..., Any] = channel.unary_unary(
            GET,
            request_serializer=activity_pb2.GetActivityRequest.SerializeToString,
            response_deserializer=activity_pb2.Activity.FromString,
        )
        with contextlib.suppress(grpc.RpcError):  # connect (a refusal is counted below)
            get(request, metadata=metadata, timeout=B_TIMEOUT_SECONDS)
        cpu = server.cpu_seconds()
        started = next_call = time.perf_counter()
        while (now := time.perf_counter()) < started + options.seconds:
            if server.exit_code() is not None:
                break
            if now < next_call:
                time.sleep(next_call - now)
            call_start = time.perf_counter()
            next_call = call_start + interval
            try:
                get(request, metadata=metadata, timeout=B_TIMEOUT_SECONDS)
            except grpc.RpcError as error:
                phase.errors[_status(error)[0]] += 1
                continue
            phase.latencies_ms.append((time.perf_counter() - call_start) * 1000)
        phase.wall_seconds = time.perf_counter() - started
        phase.server_cpu_seconds = server.cpu_seconds() - cpu
    return phase


# --- athlete A: N concurrent full streams, in a separate process ------------------------


@dataclass
class StreamJob:
    address: str
    token: str
    activities: list[str]
    streams: int
    retry: str


async def _athlete_a(job: StreamJob, measuring: Event, stop: Event, out: Queue[Any]) -> None:
    metadata = (("authorization", f"Bearer {job.token}"),)
    # samples, bytes, opened, completed, "refused <reason>", "error <code>"
    totals: Counter[str] = Counter()
    serving = 0  # streams that have delivered a first chunk and not yet ended

    def decode(data: bytes) -> activity_pb2.StreamActivitySamplesResponse:
        totals["bytes"] += len(data)
        return activity_pb2.StreamActivitySamplesResponse.FromString(data)

    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(job.address, options=options) as channel:
        stream = channel.unary_stream(
            STREAM,
            request_serializer=activity_pb2.StreamActivitySamplesRequest.SerializeToString,
            response_deserializer=decode,
        )

        async def worker(index: int) -> None:
            request = activity_pb2.StreamActivitySamplesRequest(
                name=job.activities[index % len(job.activities)]
            )
            nonlocal serving
            while not stop.is_set():
                totals["opened"] += 1
                delivering = False
                try:
                    # Read to the end: never cancel (old servers crashed on cancellation).
                    async for chunk in stream(request, metadata=metadata):
                        if not delivering:
                            delivering, serving = True, serving + 1
                        totals["samples"] += len(chunk.samples)
                    totals["completed"] += 1
                except grpc.aio.AioRpcError as error:
                    status, delays = _status(error)
                    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        totals[f"refused {status}"] += 1
                        wait = 0.0 if job.retry == "immediate" else delays.get(job.retry, 1.0)
                    else:
                        totals[f"error {status}"] += 1
                        wait = 0.1
                    await asyncio.sleep(wait)
                finally:
                    serving -= delivering

        workers = [asyncio.create_task(worker(i)) for i in range(job.streams)]
        await _until(lambda: totals["samples"] > 0 or stop.is_set())
        out.put(("ready", None))
        await _until(lambda: measuring.is_set() or stop.is_set())
        before, started = Counter(totals), time.perf_counter()
        cpu_before = _own_cpu()
        serving_samples = []
        while not stop.is_set():
            serving_samples.append(serving)
            await asyncio.sleep(0.01)
        window = Counter(totals)
        window.subtract(before)
        elapsed = time.perf_counter() - started
        window["serving"] = round(sum(serving_samples) / max(1, len(serving_samples)))
        out.put(("window", (dict(window), elapsed, (_own_cpu() - cpu_before) / elapsed)))
        # The harness stops the server next, which ends the open streams.
        await asyncio.wait(workers, timeout=30)
        for task in workers:
            task.cancel()


async def _until(condition: Callable[[], bool]) -> None:
    """Polls: the flags are multiprocessing Events, which asyncio cannot await."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_athlete_a(job: StreamJob, measuring: Event, stop: Event, out: Queue[Any]) -> None:
    asyncio.run(_athlete_a(job, measuring, stop, out))


# --- the run ----------------------------------------------------------------------------


@dataclass
class Outcome:
    revision: str
    alone: Phase
    loaded: Phase | None = None
    streams: dict[str, int] = field(default_factory=dict)
    stream_seconds: float = 0.0
    client_cpu: float = 0.0
    crash: str | None = None


def _revision(root: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{git('rev-parse', '--short', 'HEAD') or '?'}{dirty}"


def _crash_report(server: Server) -> str:
    lines = list(server.tail)
    # From the fault handler's first lines (the crashing thread's innermost frames) if any.
    fatal = next((i for i, line in enumerate(lines) if "Fatal Python error" in line), None)
    shown = lines[fatal : fatal + 12] if fatal is not None else lines[-12:]
    tail = "\n".join(f"    {line}" for line in shown)
    kept = Path(tempfile.gettempdir()) / f"stride-fairness-crash-{server.process.pid}.log"
    shutil.copyfile(server.log_path, kept)
    return (
        f"server exited with {server.exit_code()} during the run (figures above are partial);"
        f" its log is kept in {kept}:\n{tail}"
    )


def measure(options: Options) -> Outcome:
    root = options.server_root.resolve()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="stride-fairness-") as tmp:
        data_dir = Path(tmp)
        seeded = _seed(root, data_dir / "stride.db", options)
        server = Server(root, data_dir, data_dir / "server.log")
        try:
            port = server.port()
            address = f"127.0.0.1:{port}"  # A's address; B's is another unless "shared"
            b_address = address if options.addresses == "shared" else f"[::1]:{port}"
            token_a, token_b = _token(address, seeded["a"]), _token(address, seeded["b"])
            b_activity = f"athletes/{seeded['b']}/activities/{seeded['b_activity']}"
            outcome = Outcome(
                _revision(root), _athlete_b(b_address, token_b, b_activity, options, server)
            )
            if server.exit_code() is not None:
                outcome.crash = _crash_report(server)
                return outcome
            job = StreamJob(
                address,
                token_a,
                [f"athletes/{seeded['a']}/activities/{a}" for a in seeded["a_activities"]],
                options.streams,
                options.retry,
            )
            measuring, stop = context.Event(), context.Event()
            out: Queue[Any] = context.Queue()
            process = context.Process(target=_run_athlete_a, args=(job, measuring, stop, out))
            process.start()
            try:
                _wait_ready(out, server, process)
                deadline = time.perf_counter() + options.warmup
                while time.perf_counter() < deadline and server.exit_code() is None:
                    time.sleep(0.05)
                measuring.set()
                if server.exit_code() is None:
                    outcome.loaded = _athlete_b(b_address, token_b, b_activity, options, server)
                stop.set()
                if server.exit_code() is not None:
                    outcome.crash = _crash_report(server)
                kind, window = out.get(timeout=60)
                assert kind == "window"
                outcome.streams, outcome.stream_seconds, outcome.client_cpu = window
            finally:
                stop.set()
                server.stop()
                process.join(timeout=40)
                if process.is_alive():
                    process.kill()
            return outcome
        except ServerCrashed:
            return Outcome(_revision(root), Phase(), crash=_crash_report(server))
        finally:
            server.stop()


def _wait_ready(out: Queue[Any], server: Server, process: Any) -> None:
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        if server.exit_code() is not None:
            raise ServerCrashed
        if not process.is_alive():
            raise RuntimeError("athlete A's client process died")
        try:
            kind, _ = out.get(timeout=0.2)
        except queue.Empty:
            continue
        if kind == "ready":
            return
    raise RuntimeError("athlete A's streams delivered nothing within 60 s")


def report(options: Options, outcome: Outcome) -> None:
    print(
        f"Fairness: athlete B's GetActivity ({options.b_rate:g}/s, sequential, "
        f"{options.seconds:g} s) alone and while athlete A keeps {options.streams} "
        f"StreamActivitySamples streams of {options.samples:,} samples open"
    )
    overrides = " ".join(
        f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("STRIDE_")
    )
    print(
        f"  server: {options.server_root} ({outcome.revision}), SQLite, limits: "
        f"{overrides or 'defaults'}; client addresses {options.addresses}, "
        f"A retries refused streams {RETRY_LABELS[options.retry]}"
    )
    print(
        f"  {'B':<12} {'calls':>6} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'server CPU':>11}"
    )
    phases = [("alone", outcome.alone)] + (
        [("A streaming", outcome.loaded)] if outcome.loaded else []
    )
    for label, phase in phases:
        print(
            f"  {label:<12} {len(phase.latencies_ms):>6} {sum(phase.errors.values()):>7}"
            f" {phase.percentile(0.5):>8.1f} {phase.percentile(0.99):>8.1f}"
            f" {max(phase.latencies_ms, default=float('nan')):>8.1f}"
            f" {phase.server_cpu:>10.0%}"
        )
        for error, count in sorted(phase.errors.items()):
            print(f"  {'':<12} {count:>6} x {error}")
    if outcome.loaded is not None and outcome.loaded.latencies_ms and not outcome.crash:
        alone, loaded = outcome.alone, outcome.loaded
        print(
            f"  ratio loaded/alone: p50 {loaded.percentile(0.5) / alone.percentile(0.5):.1f}x,"
            f" p99 {loaded.percentile(0.99) / alone.percentile(0.99):.1f}x,"
            f" max {max(loaded.latencies_ms) / max(alone.latencies_ms):.1f}x"
        )
    if outcome.streams:
        s, seconds = outcome.streams, outcome.stream_seconds or float("nan")
        refused = {k.removeprefix("refused "): v for k, v in s.items() if k.startswith("refused")}
        errors = {k.removeprefix("error "): v for k, v in s.items() if k.startswith("error")}
        print(
            f"  A (same window): {s.get('samples', 0) / seconds:,.0f} samples/s"
            f" ({s.get('bytes', 0) / seconds / 1e6:.1f} MB/s), {s.get('serving', 0)} streams"
            f" delivering on average, {s.get('opened', 0)} opened,"
            f" {s.get('completed', 0)} completed, "
            f"{sum(refused.values())} refused"
            + (f" ({', '.join(f'{v} {k}' for k, v in sorted(refused.items()))})" if refused else "")
            + (f", errors: {errors}" if errors else "")
            + f"; A's client used {outcome.client_cpu:.0%} of a core"
        )
    if outcome.crash:
        print(f"  CRASH: {outcome.crash}")


def run(options: Options | None = None) -> bool:
    """Measures and prints; False when the server crashed during the run."""
    options = options or Options()
    outcome = measure(options)
    report(options, outcome)
    return outcome.crash is None


def main(argv: list[str] | None = None) -> None:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m bench.fairness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server-root",
        type=Path,
        default=defaults.server_root,
        help="checkout whose server (and schema) is measured",
    )
    parser.add_argument("--streams", type=int, default=defaults.streams)
    parser.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="length of each of B's two phases"
    )
    parser.add_argument("--activities", type=int, default=defaults.activities)
    parser.add_argument("--samples", type=int, default=defaults.samples)
    parser.add_argument(
        "--b-rate", type=float, default=defaults.b_rate, help="B's calls per second"
    )
    parser.add_argument(
        "--retry",
        choices=list(RETRY_LABELS),
        default=defaults.retry,
        help="A re-opens a refused stream after the RetryInfo delay (server), after the"
        " retry-after trailer (trailer), or at once (immediate)",
    )
    parser.add_argument(
        "--addresses",
        choices=["separate", "shared"],
        default=defaults.addresses,
        help="B calls from ::1 and A from 127.0.0.1 (own per-address buckets), or both"
        " from 127.0.0.1 (as behind one NAT or proxy)",
    )
    args = parser.parse_args(argv)
    ok = run(
        Options(
            server_root=args.server_root,
            streams=args.streams,
            seconds=args.seconds,
            activities=args.activities,
            samples=args.samples,
            b_rate=args.b_rate,
            retry=args.retry,
            addresses=args.addresses,
        )
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

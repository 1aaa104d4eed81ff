"""Reads through the real server under h2load, each against a bare grpc.aio handler.

For every database (SQLite; PostgreSQL when running), STRIDE_PROCESSES (1, 2) and cache
(warm: default settings; cold: STRIDE_CACHE_ENABLED=false, every read goes to the database),
the real server (`python -m server`, Redis when running) is started on seeded data: one
athlete with 500 activities. The cases Health/Check, GetAthlete, GetActivity and
ListActivities(page_size=100) are driven by h2load at c=1 (m=1) and at c=8 x m=8, each
run alternating with a bare grpc.aio server (no interceptors) answering exactly the bytes
the real server answered: bare, real, bare, real, bare, real; medians are reported.

h2load counts HTTP 200 even for gRPC errors, so every real run is checked against the
server's `stride_rpc_handled_total` (scraped before and after): OK must grow by exactly the
requests h2load completed and no other code may grow. Every bare run is checked against the
bare server's own count of answered calls (/bench.Baseline/Count), and its answer once
through a real gRPC client. A failed check marks the case FAILED and the run exits 1.

    python -m bench.reads [--quick] [--databases sqlite] [--processes 1] [--cases list] ...
    python -m bench --only reads          (BENCH_QUICK=1 for the quick run)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2
from stride.v1 import activity_pb2, athlete_pb2

from bench import h2load
from bench.processes import (
    ADMIN_METADATA,
    ADMIN_TOKEN,
    Started,
    baseline_server_for,
    stride_server_started,
)
from domain.activities import ActivityEdit, Measurements, Source
from domain.athletes import AthleteProfile
from storage import migrate
from storage.database import Database, PoolOptions
from storage.repositories.activities import ActivityRepository
from storage.repositories.athletes import AthleteRepository
from tests.support import postgres_available, postgres_database, redis_available

ACTIVITIES = 500
REDIS_URL = "redis://127.0.0.1:6379/15"
# STRIDE_* variables of the bench run reach the servers under test (to compare settings).
EXTRA = {k: v for k, v in os.environ.items() if k.startswith("STRIDE_")}

DATABASES = ("sqlite", "postgresql")
PROCESSES = (1, 2)
CACHES = ("warm", "cold")
CASES = ("health", "get-athlete", "get-activity", "list")
CONCURRENCIES = {"c1": (1, 1), "c8m8": (8, 8)}
CASE_LABELS = {
    "health": "Health",
    "get-athlete": "GetAthlete",
    "get-activity": "GetActivity",
    "list": "List(100)",
}


@dataclass(frozen=True)
class Options:
    databases: tuple[str, ...] = DATABASES
    processes: tuple[int, ...] = PROCESSES
    caches: tuple[str, ...] = CACHES
    cases: tuple[str, ...] = CASES
    concurrencies: tuple[str, ...] = tuple(CONCURRENCIES)
    rounds: int = 3
    # Each measured run sends about this many seconds' worth of requests (from a warm-up's rate).
    seconds: float = 1.5

    @classmethod
    def quick(cls) -> Options:
        return cls(processes=(1,), rounds=1, seconds=0.4)


def seed(url: str) -> tuple[str, str]:
    """An athlete with ACTIVITIES activities; returns (athlete name, activity name)."""
    database = Database(url, [], PoolOptions(size=1, max_overflow=0))
    migrate.upgrade(database.primary)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    with database.transaction() as session:
        athlete = AthleteRepository(session).add(
            AthleteProfile(display_name="Bench", time_zone="Europe/Oslo"), None
        )
        repo = ActivityRepository(session)
        for i in range(ACTIVITIES):
            activity = repo.add(
                athlete.id,
                ActivityEdit(title=f"Run {i}", sport_type="Run", description="steady"),
                Measurements(
                    start_time=start + dt.timedelta(hours=i),
                    elapsed=dt.timedelta(minutes=45),
                    time_zone="Europe/Oslo",
                    distance_meters=10_000 + i,
                ),
                source=Source.MANUAL,
            )
    database.dispose()
    return f"athletes/{athlete.id}", f"athletes/{athlete.id}/activities/{activity.id}"


@dataclass(frozen=True)
class Case:
    key: str
    path: str
    request: bytes
    auth: bool

    @property
    def label(self) -> str:
        return CASE_LABELS[self.key]


def _cases(athlete: str, activity: str, chosen: Sequence[str]) -> list[Case]:
    every = {
        "health": Case(
            "health",
            "/grpc.health.v1.Health/Check",
            health_pb2.HealthCheckRequest().SerializeToString(),
            auth=False,
        ),
        "get-athlete": Case(
            "get-athlete",
            "/stride.v1.AthleteService/GetAthlete",
            athlete_pb2.GetAthleteRequest(name=athlete).SerializeToString(),
            auth=True,
        ),
        "get-activity": Case(
            "get-activity",
            "/stride.v1.ActivityService/GetActivity",
            activity_pb2.GetActivityRequest(name=activity).SerializeToString(),
            auth=True,
        ),
        "list": Case(
            "list",
            "/stride.v1.ActivityService/ListActivities",
            activity_pb2.ListActivitiesRequest(parent=athlete, page_size=100).SerializeToString(),
            auth=True,
        ),
    }
    return [every[key] for key in chosen]


@contextmanager
def _backends(
    workdir: Path, chosen: Sequence[str]
) -> Iterator[list[tuple[str, dict[str, str], str]]]:
    """(label, server settings, database url) for SQLite and, when running, PostgreSQL."""
    with ExitStack() as stack:
        backends = []
        if "sqlite" in chosen:
            data_dir = workdir / "sqlite"
            data_dir.mkdir()
            backends.append(
                (
                    "sqlite",
                    {"STRIDE_DATA_DIR": str(data_dir)},
                    f"sqlite:///{data_dir / 'stride.db'}",
                )
            )
        if "postgresql" in chosen:
            if postgres_available():
                url = stack.enter_context(postgres_database())
                settings = {"STRIDE_DATA_DIR": str(workdir / "pg"), "STRIDE_DATABASE_URL": url}
                backends.append(("postgresql", settings, url))
            else:
                print("  PostgreSQL not running on 127.0.0.1:5432: its rows are skipped")
        yield backends


def _fetch(address: str, case: Case) -> bytes:
    """The call's answer, as the exact bytes on the wire, through a real gRPC client."""
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            case.path, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        answer: bytes = call(case.request, metadata=ADMIN_METADATA if case.auth else (), timeout=30)
        return answer


def _bare_count(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/bench.Baseline/Count",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        answer: bytes = call(b"", timeout=10)
        return int(answer)


def _flush(client: redis.Redis | None, prefix: str) -> None:
    """Delete this run's keys only (Huey's key names embed the prefix rather than start with it)."""
    if client is None:
        return
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError as exc:
        print(f"  (could not flush Redis keys {prefix}*: {exc})")


@dataclass
class Row:
    case: str
    db: str
    processes: int
    cache: str
    conc: str
    real: list[h2load.Run] = field(default_factory=list)
    bare: list[h2load.Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures) or not self.real or not self.bare

    @staticmethod
    def _median(values: Sequence[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def rate(self, bare: bool = False) -> float:
        return self._median([r.rate for r in (self.bare if bare else self.real)])

    def p50(self, bare: bool = False) -> float:
        return self._median([r.p50_ms for r in (self.bare if bare else self.real)])

    def p99(self, bare: bool = False) -> float:
        return self._median([r.p99_ms for r in (self.bare if bare else self.real)])

    @property
    def ratio(self) -> float:
        bare = self.rate(bare=True)
        return self.rate() / bare if bare else float("nan")


def _requests_for(rate: float, seconds: float, streams: int) -> int:
    """Requests for about `seconds` at `rate`, at least a few per stream."""
    return max(4 * streams, 50, min(200_000, round(rate * seconds)))


class Bench:
    def __init__(self, h2load_path: str, options: Options) -> None:
        self.h2load = h2load_path
        self.options = options

    def _h2load(self, address: str, case: Case, conc: str, requests: int) -> h2load.Run:
        clients, streams = CONCURRENCIES[conc]
        return h2load.run_h2load(
            self.h2load,
            f"http://{address}{case.path}",
            h2load.grpc_frame(case.request),
            requests=requests,
            clients=clients,
            streams=streams,
            headers=h2load.grpc_headers(ADMIN_TOKEN if case.auth else None),
        )

    def _calibrate(self, address: str, case: Case, conc: str) -> int:
        """A warm-up run; returns the request count for the measured runs."""
        clients, streams = CONCURRENCIES[conc]
        warm = self._h2load(address, case, conc, max(50, 4 * clients * streams))
        return _requests_for(warm.rate, self.options.seconds, clients * streams)

    def measure(self, row: Row, case: Case, server: Started, bare: str) -> None:
        assert server.metrics_port is not None
        real_n = self._calibrate(server.address, case, row.conc)
        bare_n = self._calibrate(bare, case, row.conc)
        for number in range(1, self.options.rounds + 1):
            before = _bare_count(bare)
            run = self._h2load(bare, case, row.conc, bare_n)
            answered = _bare_count(bare) - before
            if not run.http_ok or answered != run.succeeded:
                row.failures.append(
                    f"round {number} bare: h2load {run.succeeded}/{run.requested} succeeded,"
                    f" the handler answered {answered}"
                )
            row.bare.append(run)
            counts = h2load.scrape_handled(server.metrics_port)
            run = self._h2load(server.address, case, row.conc, real_n)
            # The counter is bumped as each call ends, which may be just after its response.
            for _ in range(20):
                after = h2load.scrape_handled(server.metrics_port)
                verdict = h2load.check_handled(counts, after, case.path, run)
                if verdict.ok:
                    break
                time.sleep(0.1)
            if not verdict.ok:
                row.failures.append(f"round {number} real: {verdict.detail}")
            row.real.append(run)


def _server_settings(
    backend: dict[str, str], processes: int, cache: str, prefix: str, with_redis: bool
) -> dict[str, str]:
    settings = {**backend, "STRIDE_METRICS_ADDRESS": "127.0.0.1:0"}
    if with_redis:
        settings |= {"STRIDE_REDIS_URL": REDIS_URL, "STRIDE_REDIS_KEY_PREFIX": prefix}
    elif "STRIDE_DATABASE_URL" in backend:
        # No Redis: the (idle) queue runs inside the server.
        settings["STRIDE_INPROCESS_WORKERS"] = "true"
    settings |= EXTRA
    settings["STRIDE_PROCESSES"] = str(processes)
    if cache == "cold":
        settings["STRIDE_CACHE_ENABLED"] = "false"
    return settings


def _measure_server(
    bench: Bench, rows: list[Row], cases: list[Case], settings: dict[str, str]
) -> None:
    """Start the server with `settings` and measure `rows` (all of this server) against it."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    try:
        with stride_server_started(settings) as server:
            if server.metrics_port is None:
                raise RuntimeError("the server logged no metrics_port")
            answers: dict[str, Path] = {}
            for case in cases:
                file = workdir / f"{case.key}.bin"
                file.write_bytes(_fetch(server.address, case))
                answers[case.path] = file
            with baseline_server_for(answers) as bare:
                for case in cases:
                    if _fetch(bare, case) != answers[case.path].read_bytes():
                        raise RuntimeError(f"the bare server's {case.label} answer differs")
                for case in cases:
                    for row in rows:
                        if row.case == case.label:
                            try:
                                bench.measure(row, case, server, bare)
                            except (RuntimeError, OSError, grpc.RpcError) as exc:
                                row.failures.append(f"{type(exc).__name__}: {exc}")
    except (RuntimeError, OSError, grpc.RpcError) as exc:
        for row in rows:
            row.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        for file in workdir.iterdir():
            file.unlink()
        workdir.rmdir()


def _fmt(value: float, digits: int) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN


def _table(rows: list[Row]) -> list[str]:
    header = (
        f"{'case':<12} {'db':<10} {'proc':>4} {'cache':<5} {'conc':<6} {'calls/s':>8}"
        f" {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} | {'bare/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        verdict = "  FAILED" if row.failed else ""
        lines.append(
            f"{row.case:<12} {row.db:<10} {row.processes:>4} {row.cache:<5} {row.conc:<6}"
            f" {_fmt(row.rate(), 0):>8} {_fmt(row.ratio, 2):>6} {_fmt(row.p50(), 2):>7}"
            f" {_fmt(row.p99(), 2):>7} | {_fmt(row.rate(True), 0):>8}"
            f" {_fmt(row.p50(True), 2):>7} {_fmt(row.p99(True), 2):>7}{verdict}"
        )
    return lines


def _goal(label: str, achieved: float, goal: float, unit: str, higher: bool = True) -> str:
    if achieved != achieved:
        return f"  {label:<64} achieved -      goal {goal:g}{unit}  MISS (not measured)"
    met = achieved >= goal if higher else achieved <= goal
    sign = ">=" if higher else "<="
    return (
        f"  {label:<64} achieved {achieved:.2f}{unit}  goal {sign} {goal:g}{unit}"
        f"  {'PASS' if met else 'MISS'}"
    )


def _goals(rows: list[Row]) -> list[str]:
    def find(case: str, db: str, processes: int, cache: str, conc: str) -> Row | None:
        for row in rows:
            key = (row.case, row.db, row.processes, row.cache, row.conc)
            if key == (case, db, processes, cache, conc) and not row.failed:
                return row
        return None

    lines = []
    combos = sorted({(row.db, row.processes) for row in rows}, key=lambda c: (c[0] != "sqlite", c))
    for db, processes in combos:
        where = f"{db}, processes={processes}"
        for case in ("GetActivity", "GetAthlete"):
            if row := find(case, db, processes, "warm", "c8m8"):
                lines.append(
                    _goal(f"{case} warm c8m8 ratio to bare ({where})", row.ratio, 0.75, "")
                )
            if row := find(case, db, processes, "warm", "c1"):
                lines.append(
                    _goal(f"{case} warm c1 p99 ({where})", row.p99(), 5, " ms", higher=False)
                )
        if row := find("List(100)", db, processes, "warm", "c8m8"):
            lines.append(_goal(f"List(100) warm c8m8 ratio to bare ({where})", row.ratio, 0.30, ""))
        if row := find("Health", db, processes, "warm", "c8m8"):
            lines.append(_goal(f"Health c8m8 ratio to bare ({where})", row.ratio, 0.85, ""))
    for db in sorted({row.db for row in rows}, key=lambda d: d != "sqlite"):
        one = find("GetActivity", db, 1, "warm", "c8m8")
        two = find("GetActivity", db, 2, "warm", "c8m8")
        if one and two:
            lines.append(
                _goal(f"GetActivity warm c8m8 processes=2 / processes=1 ({db})",
                      two.rate() / one.rate(), 1.6, "x")
            )  # fmt: skip
    return lines


def run(options: Options | None = None) -> bool:
    """Measures and prints; False (and, from `python -m bench`, exit status 1) when a case
    failed its status check."""
    from_runner = options is None
    if options is None:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        options = Options.quick() if quick else Options()
    path = h2load.find_h2load()
    if path is None:
        print(f"Reads through h2load: skipped. {h2load.INSTALL_HINT}")
        return True
    ok = measure_and_report(path, options)
    if not ok and from_runner:
        raise SystemExit(1)
    return ok


def measure_and_report(h2load_path: str, options: Options) -> bool:
    started = time.monotonic()
    print(
        f"Reads through h2load vs a bare grpc.aio handler (same answer bytes); {ACTIVITIES}"
        f" activities; {options.rounds} round(s) of bare, real; ~{options.seconds:g} s of"
        " requests per run; medians"
    )
    print(
        "  gRPC status: real runs by stride_rpc_handled_total deltas (OK == h2load's completed,"
        " no other code grows); bare runs by the handler's own answer count and one call"
        " through a gRPC client"
    )
    if EXTRA:
        print(f"  with {' '.join(f'{k}={v}' for k, v in sorted(EXTRA.items()))}")
    with_redis = redis_available(REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL) if with_redis else None
    if not with_redis:
        print(f"  Redis not running at {REDIS_URL}: servers run without it")
    run_id = uuid.uuid4().hex[:8]
    bench = Bench(h2load_path, options)
    rows: list[Row] = []
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            _backends(Path(tmp), options.databases) as backends,
        ):
            for db, backend, url in backends:
                athlete, activity = seed(url)
                cases = _cases(athlete, activity, options.cases)
                for processes in options.processes:
                    for cache in options.caches:
                        prefix = f"bench-reads:{run_id}:{db}:{processes}:{cache}:"
                        settings = _server_settings(backend, processes, cache, prefix, with_redis)
                        server_rows = [
                            Row(case.label, db, processes, cache, conc)
                            for case in cases
                            for conc in options.concurrencies
                        ]
                        print(
                            f"  measuring {db}, processes={processes}, cache {cache} ...",
                            flush=True,
                        )
                        try:
                            _measure_server(bench, server_rows, cases, settings)
                        finally:
                            _flush(client, prefix)
                        rows += server_rows
    finally:
        if client is not None:
            client.close()
    print()
    for line in _table(rows):
        print(line)
    failed = [row for row in rows if row.failed]
    for row in failed:
        what = f"{row.case} {row.db} processes={row.processes} {row.cache} {row.conc}"
        for failure in row.failures or ["not measured"]:
            print(f"  FAILED {what}: {failure}")
    print()
    print("Goals (warm cache):")
    for line in _goals(rows):
        print(line)
    print(f"({time.monotonic() - started:.0f} s)")
    if failed:
        print(
            f"{len(failed)} case(s) FAILED (gRPC status check or server start; reasons above)",
            file=sys.stderr,
        )
    return not failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reads",
        description="Reads through the real server driven by h2load, each against a bare"
        " grpc.aio handler answering the same bytes (see docs/benchmarks.md).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="one round, fewer requests, processes=1 only (also BENCH_QUICK=1)",
    )
    parser.add_argument("--databases", help=f"comma-separated, of: {','.join(DATABASES)}")
    parser.add_argument("--processes", help="comma-separated STRIDE_PROCESSES values (1,2)")
    parser.add_argument("--cache", help=f"comma-separated, of: {','.join(CACHES)}")
    parser.add_argument("--cases", help=f"comma-separated, of: {','.join(CASES)}")
    parser.add_argument("--concurrency", help=f"comma-separated, of: {','.join(CONCURRENCIES)}")
    parser.add_argument("--rounds", type=int, help="bare/real rounds per case (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds of requests per run (about)")
    args = parser.parse_args(argv)
    options = Options.quick() if args.quick else Options()

    def pick(value: str | None, allowed: Sequence[str], name: str) -> tuple[str, ...] | None:
        if value is None:
            return None
        chosen = tuple(v.strip() for v in value.split(",") if v.strip())
        bad = [v for v in chosen if v not in allowed]
        if bad or not chosen:
            parser.error(f"--{name}: expected some of {','.join(allowed)}")
        return chosen

    databases = pick(args.databases, DATABASES, "databases")
    caches = pick(args.cache, CACHES, "cache")
    cases = pick(args.cases, CASES, "cases")
    concurrencies = pick(args.concurrency, tuple(CONCURRENCIES), "concurrency")
    processes: tuple[int, ...] | None = None
    if args.processes is not None:
        try:
            processes = tuple(int(v) for v in args.processes.split(",") if v.strip())
        except ValueError:
            parser.error("--processes: expected numbers such as 1,2")
        if not processes or min(processes) < 1:
            parser.error("--processes: expected numbers such as 1,2")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds: at least 1")
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds: more than 0")
    options = Options(
        databases=databases or options.databases,
        processes=processes or options.processes,
        caches=caches or options.caches,
        cases=cases or options.cases,
        concurrencies=concurrencies or options.concurrencies,
        rounds=args.rounds or options.rounds,
        seconds=args.seconds or options.seconds,
    )
    sys.exit(0 if run(options) else 1)


if __name__ == "__main__":
    main()

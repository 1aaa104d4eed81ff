"""Analytics reads through the real server, against the bare baseline, in one run.

One athlete (Europe/Oslo, born 1975, male, heart rates set) with an activity every day for
five years (1,826 days, 2021-11-29 to 2026-11-28): 1,000 of them are runs with samples
every 5 s (30-60 min, every fifth one 100 min; distance and heart rate), the others rides
with an average heart rate and swims without, no samples. Every activity is written through
the real write path (`ExternalActivities.write`: training load, and best efforts for the
runs, stored as sync stores them). Then, against the server in its own process:
GetTrainingSummary weekly over the five years and monthly per sport over the five years,
ListPersonalRecords all-time and per year, GetFitnessTrend over the last year.

Baseline, same run: the bare grpc.aio handler (`bench/baseline_server.py`) answering the
exact bytes the real server answered for the same request. Each call at c=1 (one client
process, one caller) and c=8 (two client processes of 4 callers). SQLite always,
PostgreSQL when it answers on 127.0.0.1.

`python -m bench --only analytics` or `python -m bench.analytics [--seconds S]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import grpc
from google.protobuf.message import Message
from google.type import date_pb2
from stride.v1 import analytics_pb2

from bench.load import Result, measure
from bench.processes import ADMIN_METADATA, baseline_server, stride_server

if TYPE_CHECKING:
    from domain.activities import Sample

# The server, storage and test-support modules are imported where they are used: the load
# generator's spawned client processes import this module, and should start quickly.

SERVICE = "stride.v1.AnalyticsService"
ZONE = "Europe/Oslo"
FIRST_DAY = dt.date(2021, 11, 29)
DAYS = 1826  # five years, to 2026-11-28
SAMPLED_RUNS = 1000
SAMPLE_STEP = 5  # seconds between samples
# (processes, callers per process)
CONCURRENCY: tuple[tuple[int, int], ...] = ((1, 1), (2, 4))


@dataclass(frozen=True)
class Seeded:
    athlete: str  # athletes/{id}
    activities: int
    samples: int
    seconds: float


def _is_sampled_run(day: int) -> bool:
    """Spreads SAMPLED_RUNS evenly over the DAYS."""
    return (day * SAMPLED_RUNS) // DAYS != ((day + 1) * SAMPLED_RUNS) // DAYS


def _run_samples(rng: random.Random, start: dt.datetime, minutes: int) -> list[Sample]:
    from domain.activities import Sample

    pace = rng.uniform(2.7, 3.8)  # m/s for the day, with a slow wobble along the way
    samples: list[Sample] = []
    distance = 0.0
    for t in range(0, minutes * 60 + 1, SAMPLE_STEP):
        speed = pace * (1 + 0.05 * math.sin(t / 300))
        samples.append(
            Sample(time=start + dt.timedelta(seconds=t), distance_meters=distance,
                   heart_rate_bpm=int(135 + 25 * (speed - 2.7) + rng.uniform(-3, 3)))
        )  # fmt: skip
        distance += speed * SAMPLE_STEP
    return samples


def seed(url: str) -> Seeded:
    """The athlete and its DAYS activities, through the real write path."""
    from domain.activities import ActivityEdit, Measurements, Source
    from domain.athletes import AthleteProfile, Sex
    from services.activities import ExternalActivities
    from storage import migrate
    from storage.database import Database, PoolOptions
    from storage.repositories.athletes import AthleteRepository

    started = time.perf_counter()
    database = Database(url, [], PoolOptions(size=1, max_overflow=0))
    migrate.upgrade(database.primary)
    profile = AthleteProfile(
        display_name="Bench", time_zone=ZONE, birth_date=dt.date(1975, 3, 14), sex=Sex.MALE,
        max_heart_rate_bpm=188, resting_heart_rate_bpm=48,
    )  # fmt: skip
    with database.transaction() as session:
        athlete_id = AthleteRepository(session).add(profile, None).id
    activities = ExternalActivities(database, Source.STRAVA)
    rng = random.Random(10)
    zone = ZoneInfo(ZONE)
    samples_written = runs = 0
    for day in range(DAYS):
        local = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=day), dt.time(7), zone)
        start = local.astimezone(dt.UTC)
        samples: list[Sample] | None = None
        if _is_sampled_run(day):
            runs += 1
            minutes = 100 if runs % 5 == 0 else rng.randint(30, 60)
            samples = _run_samples(rng, start, minutes)
            last = samples[-1].distance_meters or 0.0
            sport, meters, elevation, heart = "Run", last, rng.uniform(20, 200), None
        elif day % 2:
            minutes = rng.randint(60, 150)
            meters = minutes * 60 * rng.uniform(6.5, 9.0)
            sport, elevation, heart = "Ride", rng.uniform(100, 1200), rng.uniform(120, 150)
        else:
            minutes = rng.randint(30, 60)
            sport, meters, elevation, heart = "Swim", minutes * 60 * 0.8, 0.0, None
        measurements = Measurements(
            start_time=start, elapsed=dt.timedelta(minutes=minutes), time_zone=ZONE,
            moving=dt.timedelta(minutes=minutes), distance_meters=meters,
            elevation_gain_meters=elevation, average_heart_rate_bpm=heart,
        )  # fmt: skip
        _, _, written = activities.write(
            athlete_id, str(day), ActivityEdit(title=f"{sport} {day}", sport_type=sport),
            measurements, {"id": day}, samples, None,
        )  # fmt: skip
        samples_written += written
    database.dispose()
    seconds = time.perf_counter() - started
    return Seeded(f"athletes/{athlete_id}", DAYS, samples_written, seconds)


def _date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def cases(athlete: str) -> list[tuple[str, str, Message, type[Message]]]:
    """(label, method, request, response type)."""
    last = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    first, year_ago = _date(FIRST_DAY), _date(last - dt.timedelta(days=364))
    summary = f"{athlete}/trainingSummary"
    pb = analytics_pb2
    return [
        ("summary, weekly, 5 years", "GetTrainingSummary",
         pb.GetTrainingSummaryRequest(name=summary, period=pb.SUMMARY_PERIOD_WEEK,
                                      start_date=first, end_date=_date(last)),
         pb.TrainingSummary),
        ("summary, monthly per sport, 5 years", "GetTrainingSummary",
         pb.GetTrainingSummaryRequest(name=summary, period=pb.SUMMARY_PERIOD_MONTH,
                                      start_date=first, end_date=_date(last), per_sport=True),
         pb.TrainingSummary),
        ("records, all-time", "ListPersonalRecords",
         pb.ListPersonalRecordsRequest(parent=athlete, page_size=100,
                                       period=pb.RECORD_PERIOD_ALL_TIME),
         pb.ListPersonalRecordsResponse),
        ("records, per year", "ListPersonalRecords",
         pb.ListPersonalRecordsRequest(parent=athlete, page_size=100,
                                       period=pb.RECORD_PERIOD_YEAR),
         pb.ListPersonalRecordsResponse),
        ("fitness trend, 1 year", "GetFitnessTrend",
         pb.GetFitnessTrendRequest(name=f"{athlete}/fitnessTrend", start_date=year_ago,
                                   end_date=_date(last)),
         pb.FitnessTrend),
    ]  # fmt: skip


def _size(answer: Message) -> str:
    """What the answer holds, to show the call did real work."""
    if isinstance(answer, analytics_pb2.TrainingSummary):
        return f"{len(answer.periods)} periods"
    if isinstance(answer, analytics_pb2.ListPersonalRecordsResponse):
        return f"{len(answer.personal_records)} records"
    if isinstance(answer, analytics_pb2.FitnessTrend):
        return f"{len(answer.points)} points"
    return ""


def _fetch(address: str, method: str, request: Message, response_type: type[Message]) -> bytes:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=lambda b: b)  # fmt: skip
        answer: bytes = call(request, metadata=ADMIN_METADATA)
    response_type.FromString(answer)
    return answer


@contextmanager
def _backends(workdir: Path) -> Iterator[list[tuple[str, dict[str, str], str]]]:
    """(label, server settings, database url) for SQLite and, when running, PostgreSQL."""
    from tests.support import postgres_available, postgres_database

    with ExitStack() as stack:
        data_dir = workdir / "sqlite"
        data_dir.mkdir()
        backends = [
            ("SQLite", {"STRIDE_DATA_DIR": str(data_dir)}, f"sqlite:///{data_dir / 'stride.db'}")
        ]
        if postgres_available():
            url = stack.enter_context(postgres_database())
            backends.append(
                ("PostgreSQL", {"STRIDE_DATA_DIR": str(workdir / "pg"), "STRIDE_DATABASE_URL": url,
                                "STRIDE_INPROCESS_WORKERS": "true"}, url)
            )  # fmt: skip
        else:
            print("  (PostgreSQL not reachable on 127.0.0.1: SQLite only)")
        yield backends


def _ms(result: Result) -> str:
    return f"{result.percentile(0.5):7.1f} / {result.percentile(0.99):7.1f}"


HEADER = (
    f"  {'call':<36} {'answer':>24} {'c':>2}  {'bare/s':>7} {'Stride/s':>8} {'ratio':>6}"
    f"   {'bare p50 / p99 ms':>17}   {'Stride p50 / p99 ms':>19}"
)


def run(seconds: float = 1.5) -> None:
    print(
        f"Analytics through the server vs a bare handler; one athlete, {DAYS} daily activities"
        f" over 5 years, {SAMPLED_RUNS} runs with samples every {SAMPLE_STEP} s;"
    )
    print("c=1: one caller; c=8: 2 client processes x 4 callers; server in its own process")
    with tempfile.TemporaryDirectory() as tmp, _backends(Path(tmp)) as backends:
        workdir = Path(tmp)
        # Each backend seeded in a process of its own, at the same time (CPU-bound Python).
        with multiprocessing.get_context("spawn").Pool(len(backends)) as pool:
            seeds = pool.map(seed, [url for _, _, url in backends])
        for (label, settings, _), seeded in zip(backends, seeds, strict=True):
            print(
                f"{label}: seeded {seeded.activities} activities, {seeded.samples:,} samples"
                f" in {seeded.seconds:.0f} s"
            )
            print(HEADER)
            with stride_server(settings) as address:
                for index, (name, method, request, response_type) in enumerate(
                    cases(seeded.athlete)
                ):
                    path = f"/{SERVICE}/{method}"
                    answer = _fetch(address, path, request, response_type)
                    described = f"{_size(response_type.FromString(answer))}, {len(answer):,} B"
                    payload = workdir / f"{label}-{index}.bin"
                    payload.write_bytes(answer)
                    # The bare handler serves this one payload (under its GetActivity name).
                    with baseline_server(payload, payload) as bare:
                        for processes, callers in CONCURRENCY:
                            base = measure(bare, "/stride.v1.Baseline/GetActivity", request,
                                           response_type, seconds=seconds,
                                           processes=processes, concurrency=callers)  # fmt: skip
                            real = measure(address, path, request, response_type,
                                           seconds=seconds, processes=processes,
                                           concurrency=callers,
                                           metadata=ADMIN_METADATA)  # fmt: skip
                            print(
                                f"  {name:<36} {described:>24} {processes * callers:>2}"
                                f"  {base.rate:7.0f} {real.rate:8.1f} {real.rate / base.rate:6.3f}"
                                f"   {_ms(base):>17}   {_ms(real):>19}"
                            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.analytics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="measuring time per call and concurrency (default 1.5)")  # fmt: skip
    run(parser.parse_args(argv).seconds)


if __name__ == "__main__":
    main()

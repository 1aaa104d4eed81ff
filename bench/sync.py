"""Strava sync throughput: a whole sync job (list, detail, streams, upserts, samples, job
events) against the unthrottled simulator, in activities/s and samples/s written.

Baseline, in the same run against the same simulator: the same requests made by the same
client, parsed and mapped the same way, with nothing stored (what the network and JSON cost
alone). The ratio is what storage, checkpoints and job events add. Embedded default (SQLite,
in-process workers) always; PostgreSQL (COPY for samples) + Redis when both answer on
127.0.0.1.

`python -m bench --only sync` or `python -m bench.sync [--activities N] [--stream-step S]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from stride.v1 import job_pb2, job_pb2_grpc, sync_pb2

from domain.strava import activity_from_strava, samples_from_streams
from tasks.strava.client import StravaClient
from tests.strava_flow import (
    connect,
    connection_name,
    create_athlete,
    strava_overrides,
    sync_stub,
    watch,
)
from tests.strava_sim import SimConfig
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    channel_as,
    make_settings,
    postgres_available,
    postgres_database,
    redis_available,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Options:
    activities: int = 150
    stream_step: int = 1  # Strava's 1 Hz


@dataclass(frozen=True)
class Row:
    label: str
    seconds: float
    activities: int
    samples: int

    def line(self, baseline: Row | None) -> str:
        ratio = "" if baseline is None else f"  {self.seconds / baseline.seconds:5.2f}x baseline"
        return (
            f"  {self.label:<34} {self.seconds:7.2f} s  {self.activities / self.seconds:7.1f}"
            f" activities/s  {self.samples / self.seconds:9.0f} samples/s{ratio}"
        )


def fetch_only(sim: RemoteSimulator, strava_id: int) -> Row:
    """The sync's requests and mapping, storing nothing."""
    tokens = sim.tokens(strava_id)
    client = StravaClient(
        client_id=str(sim.config.client_id),
        client_secret=sim.config.client_secret,
        api_url=sim.api_url,
        oauth_url=f"{sim.base_url}/oauth",
    )
    started = time.perf_counter()
    count = samples = 0
    page = 1
    with client:
        while True:
            listing = client.list_activities(tokens["access_token"], after=0, page=page)
            for summary in listing:
                detail = client.get_activity(tokens["access_token"], summary.id)
                mapped = activity_from_strava(detail.raw)
                streams = client.get_streams(tokens["access_token"], summary.id)
                samples += len(
                    samples_from_streams(mapped.measurements.start_time, streams.by_type)
                )
                count += 1
            if len(listing) < 100:
                break
            page += 1
    return Row("baseline: fetch + map, no storage", time.perf_counter() - started, count, samples)


def sync_job(sim: RemoteSimulator, strava_id: int, label: str, database_url: str | None,
             **extra: object) -> Row:  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        settings = make_settings(
            Path(workdir), database_url, inprocess_workers=True, **strava_overrides(sim, **extra)
        )
        with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
            athlete = create_athlete(channel)
            connect(channel, athlete, sim, strava_id)
            sync = sync_stub(channel)
            started = time.perf_counter()
            job = sync.StartSync(
                sync_pb2.StartSyncRequest(name=connection_name(athlete), full=True)
            )
            events = watch(channel, job.name, timeout=600)
            seconds = time.perf_counter() - started
            if events[-1].state != job_pb2.JOB_STATE_SUCCEEDED:
                raise RuntimeError(f"the sync ended {events[-1].state}: {events[-1].message}")
            result = (
                job_pb2_grpc.JobServiceStub(channel)
                .GetJob(job_pb2.GetJobRequest(name=job.name))
                .result
            )
    return Row(label, seconds, int(result.created), int(result.samples_written))


class RemoteSimulator:
    """The simulator in a process of its own (so it does not share the GIL with Stride),
    with the bits of `StravaSimulator` the flow helpers use, over its control API."""

    def __init__(self, config: SimConfig, base_url: str) -> None:
        self.config = config
        self.base_url = base_url
        self.api_url = f"{base_url}/api/v3"
        self.http = httpx.Client(base_url=base_url, timeout=30)

    @property
    def athlete_ids(self) -> list[int]:
        return [int(row["id"]) for row in self.http.get("/_sim/athletes").json()]

    def authorize(self, athlete_id: int) -> str:
        return str(self.http.post("/_sim/codes", params={"athlete_id": athlete_id}).json()["code"])

    def tokens(self, athlete_id: int) -> dict[str, Any]:
        body: dict[str, Any] = self.http.post(
            "/_sim/tokens", params={"athlete_id": athlete_id}
        ).json()
        return body


@contextmanager
def _simulator(options: Options) -> Iterator[RemoteSimulator]:
    limits = "1000000,10000000"
    config = SimConfig(seed=11, athletes=1, activities=options.activities,
                       stream_step=options.stream_step)  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.strava_sim", "--port", "0", "--seed", str(config.seed),
         "--athletes", "1", "--activities", str(options.activities),
         "--stream-step", str(options.stream_step), "--no-rate-limit",
         "--rate-limit", limits, "--read-rate-limit", limits],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        threading.Thread(target=process.stdout.read, daemon=True).start()
        remote = RemoteSimulator(config, first.rsplit(" ", 1)[-1].strip())
        yield remote
        remote.http.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(options: Options) -> list[tuple[Row, Row]]:
    rows = []
    with _simulator(options) as sim:
        strava_id = sim.athlete_ids[0]
        fetch_only(sim, strava_id)  # warm up (the simulator generates streams once)
        baseline = fetch_only(sim, strava_id)
        rows.append((baseline, sync_job(sim, strava_id, "SQLite, in-process workers", None)))
        if postgres_available() and redis_available():
            with postgres_database() as url:
                prefix = f"bench-sync-{uuid.uuid4().hex[:8]}:"
                row = sync_job(sim, strava_id, "PostgreSQL (COPY) + Redis", url,
                               redis_url=REDIS_URL, redis_key_prefix=prefix)  # fmt: skip
                rows.append((fetch_only(sim, strava_id), row))
        else:
            print("  (PostgreSQL or Redis not reachable on 127.0.0.1: embedded only)")
    return rows


def run(options: Options | None = None) -> None:
    options = options or Options()
    print(
        f"Strava sync: a full sync of {options.activities} activities (streams every"
        f" {options.stream_step} s) from the unthrottled simulator, StartSync -> SUCCEEDED"
    )
    for baseline, row in measure(options):
        print(baseline.line(None))
        print(row.line(baseline))


def main(argv: list[str] | None = None) -> None:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.sync", description=__doc__)
    parser.add_argument("--activities", type=int, default=defaults.activities)
    parser.add_argument("--stream-step", type=int, default=defaults.stream_step)
    args = parser.parse_args(argv)
    run(Options(activities=args.activities, stream_step=args.stream_step))


if __name__ == "__main__":
    main()

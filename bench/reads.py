"""Get and List (100 per page) through the real server, against the bare baseline, one run."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from stride.v1 import activity_pb2

from bench.load import measure
from bench.processes import ADMIN_METADATA, baseline_server, stride_server
from domain.activities import ActivityEdit, Measurements, Source
from domain.athletes import AthleteProfile
from storage import migrate
from storage.database import Database, PoolOptions
from storage.repositories.activities import ActivityRepository
from storage.repositories.athletes import AthleteRepository
from tests.support import postgres_available, postgres_database

ACTIVITIES = 500
SERVICE = "stride.v1.ActivityService"
# STRIDE_* variables of the bench run reach the servers under test (to compare settings).
EXTRA = {k: v for k, v in os.environ.items() if k.startswith("STRIDE_")}
M = TypeVar("M", bound=Message)


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


@contextmanager
def _backends(workdir: Path) -> Iterator[list[tuple[str, dict[str, str], str]]]:
    """(label, server settings, database url) for SQLite and, when running, PostgreSQL."""
    with ExitStack() as stack:
        data_dir = workdir / "sqlite"
        data_dir.mkdir()
        backends = [
            ("sqlite", {"STRIDE_DATA_DIR": str(data_dir)}, f"sqlite:///{data_dir / 'stride.db'}")
        ]
        if postgres_available():
            url = stack.enter_context(postgres_database())
            backends.append(
                (
                    "postgresql",
                    {
                        "STRIDE_DATA_DIR": str(workdir / "pg"),
                        "STRIDE_DATABASE_URL": url,
                        # No Redis here: the (idle) queue runs inside the server.
                        "STRIDE_INPROCESS_WORKERS": "true",
                    },
                    url,
                )
            )
        yield backends


def _fetch(address: str, method: str, request: Message, response_type: type[M]) -> M:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return call(request, metadata=ADMIN_METADATA)  # type: ignore[no-any-return]


def run(seconds: float = 4.0) -> None:
    print(f"Get / List(100) through the server vs a bare handler; {ACTIVITIES} activities,")
    print("2 client processes x 16 concurrent callers, server in its own process")
    with tempfile.TemporaryDirectory() as tmp, _backends(Path(tmp)) as backends:
        workdir = Path(tmp)
        for label, settings, url in backends:
            athlete, activity = seed(url)
            cases: list[tuple[str, Message, type[Message]]] = [
                ("GetActivity", activity_pb2.GetActivityRequest(name=activity),
                 activity_pb2.Activity),
                ("ListActivities", activity_pb2.ListActivitiesRequest(parent=athlete,
                                                                      page_size=100),
                 activity_pb2.ListActivitiesResponse),
            ]  # fmt: skip
            with stride_server(settings) as address:
                # The baseline returns exactly the bytes the real server returns.
                for method, request, response_type in cases:
                    answer = _fetch(address, f"/{SERVICE}/{method}", request, response_type)
                    (workdir / f"{method}.bin").write_bytes(answer.SerializeToString())
                files = (workdir / "GetActivity.bin", workdir / "ListActivities.bin")
                with baseline_server(*files) as bare:
                    for method, request, response_type in cases:
                        base = measure(
                            bare,
                            f"/stride.v1.Baseline/{method}",
                            request,
                            response_type,
                            seconds=seconds,
                        )
                        real = measure(
                            address,
                            f"/{SERVICE}/{method}",
                            request,
                            response_type,
                            seconds=seconds,
                            metadata=ADMIN_METADATA,
                        )
                        print(base.line(f"  baseline     {method}"))
                        print(real.line(f"  {label:<12} {method}"))
                        print(f"  {'':<12} ratio {real.rate / base.rate:.2f} of baseline")

"""Migrations against both databases, and read-replica routing through the server."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from stride.v1 import activity_pb2, activity_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from domain.athletes import AthleteProfile
from storage import migrate
from storage.database import Database, PoolOptions
from storage.models import Base
from storage.repositories.athletes import AthleteRepository
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    channel_as,
    make_settings,
    postgres_database,
    seed_activity_with_samples,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'empty.db'}"
        else:
            request.getfixturevalue("postgres_template")  # skips or fails without PostgreSQL
            url = stack.enter_context(postgres_database())
        database = Database(url, [], PoolOptions())
        stack.callback(database.dispose)
        yield database.primary


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_to_head_matches_models_and_downgrades_to_empty(engine: Engine) -> None:
    assert _tables(engine) == set()
    migrate.upgrade(engine)
    assert _tables(engine) == set(Base.metadata.tables)
    with engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert diff == [], f"models and migrations disagree: {diff}"
    migrate.downgrade(engine)
    assert _tables(engine) == set()
    migrate.upgrade(engine)
    assert _tables(engine) == set(Base.metadata.tables)


@pytest.mark.usefixtures("postgres_template")
def test_reads_go_to_the_replica_and_writes_to_the_primary(tmp_path: Path) -> None:
    with postgres_database() as primary_url, postgres_database() as replica_url:
        replica = Database(replica_url, [], PoolOptions(size=1, max_overflow=0))
        migrate.upgrade(replica.primary)
        with replica.transaction() as session:
            only_on_replica = AthleteRepository(session).add(
                AthleteProfile(display_name="Replica only", time_zone="UTC"), None
            )
        replica.dispose()

        settings = make_settings(tmp_path, primary_url, database_replica_urls=[replica_url])
        with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
            stub = athlete_pb2_grpc.AthleteServiceStub(channel)
            written = stub.CreateAthlete(
                athlete_pb2.CreateAthleteRequest(
                    athlete=athlete_pb2.Athlete(display_name="Primary", time_zone="UTC")
                )
            )
            # Read-your-own-writes: Get goes to the primary.
            assert stub.GetAthlete(athlete_pb2.GetAthleteRequest(name=written.name)) == written
            listed = stub.ListAthletes(athlete_pb2.ListAthletesRequest())
            assert [a.display_name for a in listed.athletes] == ["Replica only"]
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetAthlete(
                    athlete_pb2.GetAthleteRequest(name=f"athletes/{only_on_replica.id}")
                )
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_embedded_database_files_are_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, which leaves new files world-readable
    try:
        with ServerThread(make_settings(tmp_path, None)) as server:
            assert server.running is not None
            with server.running.database.transaction() as session:  # a write: WAL files
                AthleteRepository(session).add(
                    AthleteProfile(display_name="Private", time_zone="UTC"), None
                )
            files = sorted(tmp_path.glob("stride.db*"))
            assert [f.name for f in files][:2] == ["stride.db", "stride.db-shm"]
            modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    finally:
        os.umask(previous)
    assert set(modes.values()) == {oct(0o600)}, modes


def test_a_sample_stream_reads_every_chunk_from_one_replica(tmp_path: Path) -> None:
    """Two SQLite files stand in for replicas holding the same activity; only their heart
    rates differ, so a stream that switched replicas between chunks would mix them."""
    replicas = [tmp_path / "replica0.db", tmp_path / "replica1.db"]
    seed = Database(f"sqlite:///{replicas[0]}", [], PoolOptions(size=1, max_overflow=0))
    migrate.upgrade(seed.primary)
    athlete_id, activity_id = seed_activity_with_samples(seed, 100)
    seed.dispose()
    with sqlite3.connect(replicas[0]) as source, sqlite3.connect(replicas[1]) as copy:
        source.backup(copy)
        copy.execute("UPDATE activity_samples SET heart_rate_bpm = 200")
    source.close()
    copy.close()

    settings = make_settings(
        tmp_path / "data",
        None,
        database_replica_urls=[f"sqlite:///{path}" for path in replicas],
    )
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        request = activity_pb2.StreamActivitySamplesRequest(
            name=f"athletes/{athlete_id}/activities/{activity_id}", chunk_size=10
        )
        for _ in range(4):
            chunks = list(stub.StreamActivitySamples(request))
            assert len(chunks) == 10
            rates = [s.heart_rate_bpm for chunk in chunks for s in chunk.samples]
            assert len(rates) == 100
            from_copy = [rate == 200 for rate in rates]
            assert all(from_copy) or not any(from_copy), "chunks came from different replicas"

"""Starting up: busy ports, configuration that cannot work, migrations as a plain owner,
and the field rules (time zones, request ids) that configuration-like input must follow."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text
from stride.v1 import athlete_pb2, athlete_pb2_grpc

from core.settings import SettingsError, load_settings
from domain import validation
from domain.errors import Violations
from storage import migrate
from tests.support import (
    PG_ADMIN_DSN,
    ROOT,
    error_events,
    postgres_available,
    postgres_database,
    server_env,
    violations,
    wait_for_port,
)

# --- helpers ----------------------------------------------------------------------------


def _start(data_dir: Path, **settings: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=server_env(data_dir, **settings),
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run(
    module: str, env: dict[str, str], *, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a module to completion; one still running after `timeout` has started for good."""
    try:
        return subprocess.run(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`python -m {module}` kept running instead of refusing to start")


@pytest.fixture
def listener() -> Iterator[int]:
    """A plain socket listening on 127.0.0.1 (no SO_REUSEPORT), as another program would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def postgres() -> None:
    if not postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required in CI")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not available")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STRIDE_* variable of the developer's shell leaks into load_settings()."""
    for name in list(os.environ):
        if name.startswith("STRIDE_"):
            monkeypatch.delenv(name)


# --- the gRPC port ----------------------------------------------------------------------


def test_second_server_on_a_busy_port_is_refused(tmp_path: Path) -> None:
    first = _start(tmp_path / "first")
    try:
        port = wait_for_port(first)
        result = _run(
            "server",
            server_env(tmp_path / "second", STRIDE_LISTEN_ADDRESS=f"127.0.0.1:{port}"),
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        (error,) = error_events(result.stderr)
        assert error["error"] == f"address 127.0.0.1:{port} is already in use"
        # The first server keeps its port and serves alone.
        assert first.poll() is None
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        _stop(first)


def test_port_held_by_another_program_is_refused_by_name(tmp_path: Path, listener: int) -> None:
    result = _run("server", server_env(tmp_path, STRIDE_LISTEN_ADDRESS=f"127.0.0.1:{listener}"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = error_events(result.stderr)
    assert error["error"] == f"address 127.0.0.1:{listener} is already in use"


def test_servers_configured_to_share_a_port_both_start(tmp_path: Path) -> None:
    first = _start(tmp_path / "first", STRIDE_REUSE_PORT="true")
    second = None
    try:
        port = wait_for_port(first)
        second = _start(
            tmp_path / "second", STRIDE_REUSE_PORT="true", STRIDE_LISTEN_ADDRESS=f"127.0.0.1:{port}"
        )
        assert wait_for_port(second) == port
    finally:
        _stop(first)
        if second is not None:
            _stop(second)


# --- the metrics port -------------------------------------------------------------------


def test_busy_metrics_port_is_named_without_a_traceback(tmp_path: Path, listener: int) -> None:
    result = _run("server", server_env(tmp_path, STRIDE_METRICS_ADDRESS=f"127.0.0.1:{listener}"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (error,) = error_events(result.stderr)
    assert error["error"] == f"metrics: address 127.0.0.1:{listener} is already in use"
    # Refused before serving: no worker or health probe ever started.
    assert "Huey consumer started" not in result.stderr


# --- secrets with PostgreSQL ------------------------------------------------------------


def _env_without_secrets(data_dir: Path, **extra: str) -> dict[str, str]:
    env = server_env(data_dir, **extra)
    del env["STRIDE_SECRET_KEY"], env["STRIDE_ADMIN_TOKEN"]
    return env


def test_postgres_without_shared_secrets_refuses_to_start(tmp_path: Path) -> None:
    # The database is never reached: the refusal comes first, naming both variables.
    env = _env_without_secrets(
        tmp_path, STRIDE_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none"
    )
    result = _run("server", env)
    assert result.returncode == 2
    assert "STRIDE_SECRET_KEY" in result.stderr
    assert "STRIDE_ADMIN_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.usefixtures("clean_env")
def test_postgres_settings_name_each_missing_secret() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1/stride"
    with pytest.raises(SettingsError) as caught:
        load_settings(database_url=url, admin_token="stride_admin_x", _env_file=None)
    assert "STRIDE_SECRET_KEY" in str(caught.value)
    assert "STRIDE_ADMIN_TOKEN" not in str(caught.value)
    with pytest.raises(SettingsError, match="STRIDE_ADMIN_TOKEN"):
        load_settings(database_url=url, secret_key=" ", _env_file=None)  # blank is not a key
    settings = load_settings(
        database_url=url, secret_key="k", admin_token="stride_admin_x", _env_file=None
    )
    assert not settings.embedded
    # The embedded default still generates its own, and tools that only migrate need neither.
    assert load_settings(_env_file=None).embedded
    assert load_settings(database_url=url, require_shared_secrets=False, _env_file=None)


@pytest.mark.usefixtures("postgres")
def test_migrate_on_postgres_needs_no_secrets(tmp_path: Path) -> None:
    with postgres_database() as url:
        result = _run("storage.migrate", _env_without_secrets(tmp_path, STRIDE_DATABASE_URL=url))
    assert result.returncode == 0, result.stderr
    assert "database at head" in result.stdout


# --- malformed ports in URLs ------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRIDE_DATABASE_URL", "postgresql+psycopg://u:pw@host:notaport/db"),
        ("STRIDE_DATABASE_URL", "postgresql+psycopg://u:pw@host:99999/db"),
        ("STRIDE_DATABASE_URL", "postgresql+psycopg://u:pw@host:/db"),
        ("STRIDE_DATABASE_REPLICA_URLS", '["postgresql+psycopg://u:pw@replica:5o32/db"]'),
        ("STRIDE_DATABASE_REPLICA_URLS", '["postgresql+psycopg://u@r/db", "postgresql://r:-1/x"]'),
        ("STRIDE_REDIS_URL", "redis://:pw@localhost:99999"),
        ("STRIDE_REDIS_URL", "redis://:pw@localhost:abc/0"),
        ("STRIDE_REDIS_URL", "redis://:pw@localhost:0/0"),
    ],
)
def test_malformed_url_port_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(require_shared_secrets=False, _env_file=None)
    message = str(caught.value)
    assert variable in message
    assert "port" in message
    assert "pw" not in message  # URLs may carry passwords: never echoed


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRIDE_DATABASE_URL", "postgresql+psycopg://u@[::1]:5432/db"),
        ("STRIDE_DATABASE_URL", "postgresql+psycopg:///db?host=/run/postgresql"),
        ("STRIDE_DATABASE_REPLICA_URLS", '["postgresql+psycopg://u@replica/db"]'),
        ("STRIDE_REDIS_URL", "redis://:pw@localhost:6379/9"),
        ("STRIDE_REDIS_URL", "rediss://cache.example"),
        ("STRIDE_REDIS_URL", "unix:///run/redis.sock?db=1"),
    ],
)
def test_well_formed_urls_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    load_settings(require_shared_secrets=False, _env_file=None)


def test_malformed_database_port_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = server_env(tmp_path, STRIDE_DATABASE_URL="postgresql+psycopg://u@host:notaport/db")
    result = _run("server", env)
    assert result.returncode == 2
    assert "STRIDE_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


# --- the first migration as a plain database owner --------------------------------------


@pytest.mark.usefixtures("postgres")
def test_first_migration_runs_as_a_plain_database_owner() -> None:
    role = f"stride_owner_{uuid.uuid4().hex[:10]}"
    database = f"stride_owned_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        admin.execute(f"CREATE DATABASE {database} OWNER {role}")
    try:
        engine = create_engine(f"postgresql+psycopg://{role}@127.0.0.1:5432/{database}")
        try:
            with engine.connect() as connection:
                assert (
                    connection.scalar(
                        text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                    )
                    is False
                )
            migrate.upgrade(engine)
            with engine.connect() as connection:
                version = connection.scalar(text("SELECT version_num FROM alembic_version"))
                assert connection.scalar(text("SELECT count(*) FROM activity_samples")) == 0
        finally:
            engine.dispose()
        assert version == _head_revision()
    finally:
        with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


# --- time zones are IANA names ----------------------------------------------------------


def _zone_violations(value: str) -> list[str]:
    found = Violations()
    validation.check_time_zone(found, "time_zone", value, required=True)
    return [item.description for item in found.items]


@pytest.mark.parametrize("name", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires"])
def test_iana_time_zones_are_accepted(name: str) -> None:
    assert _zone_violations(name) == []


@pytest.mark.parametrize(
    "name", ["localtime", "Factory", "posixrules", "posix/Europe/Paris", "right/Europe/Paris"]
)
def test_system_zoneinfo_files_are_not_time_zones(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Whether a system lists them depends on its zoneinfo directory: list them all here.
    listed = zoneinfo.available_timezones() | {name, "UTC"}
    monkeypatch.setattr(zoneinfo, "available_timezones", lambda: listed)
    validation._time_zones.cache_clear()
    try:
        assert _zone_violations(name) == ["must be an IANA time zone such as Europe/Paris"]
        assert _zone_violations("UTC") == []
    finally:
        monkeypatch.undo()
        validation._time_zones.cache_clear()


@pytest.mark.parametrize("database_url", [None])  # validation does not depend on the database
def test_athlete_rpcs_refuse_non_iana_time_zones(
    athletes: athlete_pb2_grpc.AthleteServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        athletes.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name="Local", time_zone="localtime")
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == ["athlete.time_zone"]

    created = athletes.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Real", time_zone="UTC")
        )
    )
    with pytest.raises(grpc.RpcError) as caught:
        athletes.UpdateAthlete(
            athlete_pb2.UpdateAthleteRequest(
                athlete=athlete_pb2.Athlete(name=created.name, time_zone="Factory"),
                update_mask=field_mask_pb2.FieldMask(paths=["time_zone"]),
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == ["athlete.time_zone"]


# --- request ids are ASCII --------------------------------------------------------------


def _request_id_violations(value: str) -> list[str]:
    found = Violations()
    validation.check_request_id(found, "request_id", value)
    return [item.description for item in found.items]


@pytest.mark.parametrize("value", ["", str(uuid.uuid4()), "retry_42-A", "x" * 64])
def test_ascii_request_ids_are_accepted(value: str) -> None:
    assert _request_id_violations(value) == []


@pytest.mark.parametrize("value", ["café", "٣", "\uff52\uff45\uff51", "Ⅻ", "a b", "a.b", "x" * 65])
def test_non_ascii_request_ids_are_refused(value: str) -> None:
    assert len(_request_id_violations(value)) == 1


@pytest.mark.parametrize("database_url", [None])
def test_create_refuses_a_non_ascii_request_id(
    athletes: athlete_pb2_grpc.AthleteServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        athletes.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(
                athlete=athlete_pb2.Athlete(display_name="Once", time_zone="UTC"),
                request_id="café-٣",
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == ["request_id"]

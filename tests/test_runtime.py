"""The composition root: what it builds from settings, who consumes the queue, and the
servers it refuses to start because nobody would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from runtime import check_server, check_worker, open_runtime, runs_inprocess_workers
from server.app import start
from storage import migrate
from tasks.queue import StrideRedisHuey, StrideSqliteHuey
from tests.support import ROOT, SharedRedis, make_settings, server_env

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # never reached by these checks
REDIS_URL = "redis://127.0.0.1:6379/0"


def _server(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=server_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_postgres_without_redis_refuses_to_start_naming_the_choice(tmp_path: Path) -> None:
    result = _server(tmp_path, STRIDE_DATABASE_URL=PG_URL)
    assert result.returncode == 2
    assert result.stderr.startswith("stride: invalid configuration")
    assert "STRIDE_REDIS_URL: must be set with STRIDE_DATABASE_URL" in result.stderr
    assert "STRIDE_INPROCESS_WORKERS=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_postgres_with_explicit_inprocess_workers_gets_past_the_check(tmp_path: Path) -> None:
    result = _server(
        tmp_path,
        STRIDE_DATABASE_URL=PG_URL,
        STRIDE_INPROCESS_WORKERS="true",
        STRIDE_DB_CONNECT_ATTEMPTS="1",
    )
    assert result.returncode == 1  # now it is the database that is missing
    assert "cannot reach the database" in result.stderr


def test_no_redis_and_no_inprocess_workers_refuses_to_start(tmp_path: Path) -> None:
    result = _server(tmp_path, STRIDE_INPROCESS_WORKERS="false")
    assert result.returncode == 2
    assert "STRIDE_INPROCESS_WORKERS: false needs STRIDE_REDIS_URL" in result.stderr
    assert "nothing would run them" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "huey.db").exists()


def test_start_refuses_a_queue_nobody_consumes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, inprocess_workers=False)
    with pytest.raises(SettingsError, match="STRIDE_INPROCESS_WORKERS"):
        asyncio.run(start(settings))


def _settings(database: bool, redis: bool, inprocess: bool | None, tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        PG_URL if database else None,
        redis_url=REDIS_URL if redis else None,
        inprocess_workers=inprocess,
    )


@pytest.mark.parametrize(
    ("database", "redis", "inprocess", "runs", "server_ok"),
    [
        # embedded default: SQLite queue, workers in the server
        (False, False, None, True, True),
        (False, False, True, True, True),
        (False, False, False, False, False),  # nobody would consume the SQLite queue
        # embedded database, Redis queue: in-process unless turned off (then stride-worker)
        (False, True, None, True, True),
        (False, True, True, True, True),
        (False, True, False, False, True),
        # PostgreSQL: Redis and stride-worker processes, or an explicit single server
        (True, False, None, True, False),  # refused at the entry point: choose explicitly
        (True, False, True, True, True),
        (True, False, False, False, False),
        (True, True, None, False, True),
        (True, True, True, True, True),
    ],
)
def test_who_consumes_the_queue(
    tmp_path: Path, database: bool, redis: bool, inprocess: bool | None, runs: bool, server_ok: bool
) -> None:
    settings = _settings(database, redis, inprocess, tmp_path)
    assert runs_inprocess_workers(settings) is runs
    if server_ok:
        check_server(settings)
    else:
        with pytest.raises(SettingsError):
            check_server(settings)


def test_open_runtime_builds_from_settings_and_closes(
    tmp_path: Path, shared_redis: SharedRedis
) -> None:
    embedded = open_runtime(make_settings(tmp_path / "a", None))
    try:
        assert isinstance(embedded.huey, StrideSqliteHuey)
        assert embedded.redis is None
        assert embedded.async_redis() is None
        migrate.upgrade(embedded.database.primary)
        # Services share the runtime's database and page-token codec.
        assert embedded.athletes.db is embedded.database
        assert embedded.activities.paging is embedded.athletes.paging is embedded.paging
    finally:
        embedded.close()

    settings = make_settings(
        tmp_path / "b", None, redis_url=shared_redis.url, redis_key_prefix=shared_redis.prefix
    )
    with_redis = open_runtime(settings)
    try:
        assert isinstance(with_redis.huey, StrideRedisHuey)
        assert with_redis.redis is not None
        assert with_redis.redis.ping()
    finally:
        with_redis.close()


def test_a_worker_runtime_never_makes_secrets_of_its_own(tmp_path: Path) -> None:
    """Services, and the page-token key they need, are built on first use: a worker on
    PostgreSQL without STRIDE_SECRET_KEY must not invent one in its data directory."""
    settings = make_settings(
        tmp_path, "postgresql+psycopg://postgres@127.0.0.1/postgres", secret_key=None
    )
    runtime = open_runtime(settings, wait_for_database=False)
    runtime.close()
    assert not (tmp_path / "secret_key").exists()


def test_worker_checks_need_the_servers_data_directory(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"huey\.db"):
        check_worker(make_settings(tmp_path, PG_URL))
    check_worker(make_settings(tmp_path, PG_URL, redis_url=REDIS_URL))
    with pytest.raises(SettingsError, match=r"stride\.db"):
        check_worker(make_settings(tmp_path, None, redis_url=REDIS_URL))
    (tmp_path / "stride.db").touch()
    (tmp_path / "huey.db").touch()
    check_worker(make_settings(tmp_path, None))

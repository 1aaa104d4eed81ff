"""Engines, pools and units of work; writes go to the primary, read-only work to a replica."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from storage import changes

log = structlog.get_logger(__name__)


class DatabaseUnavailable(Exception):
    """The database could not be reached after every retry."""


@dataclass(frozen=True)
class PoolOptions:
    size: int = 20
    max_overflow: int = 30
    timeout_seconds: float = 10.0
    recycle_seconds: int = 1800
    pre_ping: bool = True


# Execution option marking a unit of work that writes (Database.transaction()). On SQLite it
# starts with BEGIN IMMEDIATE, taking the database's write lock before the first read.
WRITE_OPTION = "stride_write"


def make_engine(url: str, pool: PoolOptions) -> Engine:
    """An engine whose errors never carry statement parameters (`hide_parameters`): they end
    up in logs and error reports, and parameters are athletes' data."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if (
            parsed.database
            and parsed.database != ":memory:"
            and not parsed.database.startswith("file:")
        ):
            _create_owner_only(parsed.database)
        engine = create_engine(
            parsed,
            pool_size=pool.size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.timeout_seconds,
            hide_parameters=True,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        parsed,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout_seconds,
        pool_recycle=pool.recycle_seconds,
        pool_pre_ping=pool.pre_ping,
        hide_parameters=True,
        connect_args={"connect_timeout": 5},
    )


def _create_owner_only(path: str) -> None:
    """Create the SQLite file readable by its owner only (0600) before SQLite first opens it;
    SQLite gives its -wal and -shm files the database file's permissions."""
    # A missing directory is left for SQLite to report when it connects.
    with suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # pysqlite's implicit transactions start lazily, at the first write: a unit of work that
    # reads, merges and writes would read outside any lock. Take transaction control from it
    # (isolation_level None) and emit BEGIN ourselves in _sqlite_begin (SQLAlchemy's recipe).
    dbapi_connection.isolation_level = None
    # Foreign keys make deletes cascade; WAL lets readers run beside the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Writers take the write lock up front (BEGIN IMMEDIATE), so SQLite serialises whole
    read-merge-write units of work; readers begin deferred and never wait for a writer."""
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Reader:
    """Read-only sessions on one engine (a replica, or the primary): work made of several
    reads, such as a sample stream read chunk by chunk, uses one Reader so that every read
    sees the same copy of the data."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
            finally:
                session.rollback()


class Database:
    """The primary engine plus optional read replicas, each with its own pool."""

    def __init__(self, primary_url: str, replica_urls: list[str], pool: PoolOptions) -> None:
        self.primary = make_engine(primary_url, pool)
        self.replicas = [make_engine(url, pool) for url in replica_urls]
        self._write_sessions = sessionmaker(
            self.primary.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
        self._primary_reader = Reader(sessionmaker(self.primary, expire_on_commit=False))
        readers = [Reader(sessionmaker(engine, expire_on_commit=False)) for engine in self.replicas]
        self._next_reader = itertools.cycle(readers or [self._primary_reader])
        self._commit_listeners: list[Callable[[set[str]], None]] = []

    def on_commit(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener(athlete ids)` after every unit of work that changed those athletes'
        data ends (storage.changes), before `transaction()` returns: after its commit, and
        after a failure too (which may hide a commit)."""
        self._commit_listeners.append(listener)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work that writes, on the primary: commits on success, rolls back on any
        error. Rows it merges into must be read locked (`with_for_update`) on PostgreSQL; on
        SQLite the whole unit holds the write lock (BEGIN IMMEDIATE)."""
        with self._write_sessions() as session:
            try:
                with session.begin():
                    yield session
            finally:
                # Also when the commit failed: it may have committed all the same (the
                # connection lost after COMMIT); a needless new version costs a miss.
                athletes = changes.touched(session)
                if athletes:
                    for listener in self._commit_listeners:
                        listener(athletes)

    @contextmanager
    def read_primary(self) -> Iterator[Session]:
        """A read-only session on the primary, for reads that must see the caller's own
        writes; it takes no write lock."""
        with self._primary_reader.session() as session:
            yield session

    def reader(self) -> Reader:
        """Read-only sessions pinned to one replica (round robin), or the primary when none is
        configured."""
        return next(self._next_reader)

    @contextmanager
    def read_only(self) -> Iterator[Session]:
        """One read-only session on a replica (round robin), or the primary when none is
        configured."""
        with self.reader().session() as session:
            yield session

    def wait_until_reachable(self, attempts: int) -> None:
        """Retry with exponential backoff until every engine answers; then give up clearly."""
        for engine in [self.primary, *self.replicas]:
            url = engine.url.render_as_string(hide_password=True)

            def report(state: RetryCallState, url: str = url) -> None:
                log.warning("database not reachable yet", url=url, attempt=state.attempt_number)

            retrying = Retrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential(multiplier=0.2, max=5),
                retry=retry_if_exception_type(OperationalError),
                before_sleep=report,
            )
            try:
                for attempt in retrying:
                    with attempt, engine.connect() as connection:
                        connection.execute(text("SELECT 1"))
            except RetryError as exc:
                raise DatabaseUnavailable(
                    f"cannot reach the database at {url} after {attempts} attempts: "
                    f"{exc.last_attempt.exception()}"
                ) from None

    def ping(self) -> None:
        """One round trip to the primary (health checks)."""
        with self.primary.connect() as connection:
            connection.execute(text("SELECT 1"))

    def pool_status(self) -> dict[str, tuple[int, int]]:
        """(checked out, overflow) per engine, for metrics."""
        status = {}
        for label, engine in [
            ("primary", self.primary),
            *((f"replica{i}", e) for i, e in enumerate(self.replicas)),
        ]:
            pool: Any = engine.pool
            if hasattr(pool, "checkedout"):
                status[label] = (int(pool.checkedout()), max(0, int(pool.overflow())))
        return status

    def dispose(self) -> None:
        for engine in [self.primary, *self.replicas]:
            engine.dispose()

"""Engines, pools and units of work; writes go to the primary, read-only work to a replica."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine, event, text
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


def make_engine(url: str, pool: PoolOptions) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            pool_size=pool.size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.timeout_seconds,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        parsed,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout_seconds,
        pool_recycle=pool.recycle_seconds,
        pool_pre_ping=pool.pre_ping,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # Foreign keys make deletes cascade; WAL lets readers run beside the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """The primary engine plus optional read replicas, each with its own pool."""

    def __init__(self, primary_url: str, replica_urls: list[str], pool: PoolOptions) -> None:
        self.primary = make_engine(primary_url, pool)
        self.replicas = [make_engine(url, pool) for url in replica_urls]
        self._primary_sessions = sessionmaker(self.primary, expire_on_commit=False)
        self._replica_sessions = [
            sessionmaker(engine, expire_on_commit=False) for engine in self.replicas
        ]
        self._next_replica = itertools.cycle(self._replica_sessions or [self._primary_sessions])

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work on the primary: commits on success, rolls back on any error."""
        with self._primary_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_only(self) -> Iterator[Session]:
        """A session on a replica (round robin), or the primary when none is configured."""
        with next(self._next_replica)() as session:
            try:
                yield session
            finally:
                session.rollback()

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

"""The composition root: one place that turns settings into the resources every process
needs (database, Redis, the task queue, services) and closes them in reverse order.

`server/app.py` (the gRPC server), `tasks/worker.py` (`stride-worker`) and command-line
tools build them here, so a process never wires its own variant. What is process-specific
stays with the process: the server's interceptors, servicers, health and thread pool; the
worker's consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis

from core.job_bus import InProcessBus, JobEventBus, RedisBus
from core.settings import ENV_PREFIX, Settings, SettingsError
from core.telemetry import instrument_engine
from domain.activities import Source
from domain.athletes import Athlete, derived_inputs_changed
from domain.files.archive import ArchiveLimits
from domain.imports import DuplicateRule
from domain.jobs import Job, JobKind
from domain.pagination import PageTokens
from services.activities import ActivityService, DerivedValues, ExternalActivities
from services.analytics import AnalyticsService
from services.athletes import AthleteService
from services.dead_letters import DeadLetterService
from services.imports import FileActivities, ImportService, UploadLimits
from services.jobs import JobService, JobStore
from services.paging import Paging
from services.records import PersonalRecordService
from services.strava import StravaService
from services.tokens import AccessTokenService
from storage.database import Database, PoolOptions
from storage.dataversions import RedisVersions
from storage.staging import Staging
from tasks.declare import TaskRef
from tasks.jobs import JOB_TASKS, enqueue_job
from tasks.queue import StrideHuey, make_huey, sqlite_queue_path
from tasks.strava import StravaClient, TokenCipher
from tasks.strava.tokens import AccessTokens

DATABASE_FILE = "stride.db"


@dataclass
class Runtime:
    """Built by `open_runtime`. Services are created on first use, so a process that never
    lists anything (a worker) never needs the page-token key."""

    settings: Settings
    database: Database
    redis: redis.Redis | None
    huey: StrideHuey
    # The read cache's per-athlete data versions, bumped by every write this process
    # commits (None: nothing here can be cached, see `build_versions`).
    versions: RedisVersions | None = None
    _async_redis: AsyncRedis | None = field(default=None, repr=False)

    @cached_property
    def paging(self) -> Paging:
        s = self.settings
        return Paging(PageTokens(s.signing_key), s.default_page_size, s.max_page_size)

    @cached_property
    def athletes(self) -> AthleteService:
        # An athlete's deletion takes their tokens with it: the token cache must forget them.
        return AthleteService(
            self.database,
            self.paging,
            on_delete=self.tokens.revoked_all_of,
            on_profile_change=self.recompute_derived,
        )

    @cached_property
    def activities(self) -> ActivityService:
        return ActivityService(self.database, self.paging)

    @cached_property
    def analytics(self) -> AnalyticsService:
        return AnalyticsService(self.database)

    @cached_property
    def derived(self) -> DerivedValues:
        return DerivedValues(self.database)

    def recompute_derived(self, before: Athlete, after: Athlete) -> None:
        """After a profile change that weighs on derived values (already marked stale), a
        RECOMPUTE job, unless one is on its way: a job that began before the change ends
        without marking the values current, and the periodic catch-up starts another."""
        if not derived_inputs_changed(before.profile, after.profile):
            return
        job, created = self.job_store.create(
            after.id, JobKind.RECOMPUTE, {"scheduled": True}, exclusive=(JobKind.RECOMPUTE,)
        )
        if created:
            self.launch_job(job)

    @cached_property
    def records(self) -> PersonalRecordService:
        return PersonalRecordService(self.database, self.paging)

    @cached_property
    def tokens(self) -> AccessTokenService:
        return AccessTokenService(self.database, self.paging)

    @cached_property
    def job_bus(self) -> JobEventBus:
        """Live job events: Redis pub/sub between processes when Redis is configured, else
        in this process (the embedded default, whose workers run in the server)."""
        if self.redis is not None:
            return RedisBus(self.redis, self.async_redis, self.settings.redis_key_prefix)
        return InProcessBus()

    @cached_property
    def job_store(self) -> JobStore:
        """Jobs and their events, published on `job_bus` after each commit."""
        return JobStore(self.database, self.job_bus)

    @cached_property
    def jobs(self) -> JobService:
        return JobService(self.job_store, self.paging)

    @cached_property
    def dead_letters(self) -> DeadLetterService:
        """Tasks that failed for good. Without paging (a worker only records them) until
        `admin_dead_letters` is asked for."""
        return DeadLetterService(self.job_store, self.huey, JOB_TASKS)

    @cached_property
    def admin_dead_letters(self) -> DeadLetterService:
        return DeadLetterService(self.job_store, self.huey, JOB_TASKS, self.paging)

    @cached_property
    def strava(self) -> StravaClient | None:
        """This process's Strava client (its budget and circuit shared through Redis when
        configured); None when the deployment has no Strava application."""
        if not self.settings.strava_enabled:
            return None
        return StravaClient.from_settings(self.settings, self.redis)

    @cached_property
    def strava_service(self) -> StravaService:
        return StravaService(
            self.settings, self.database, self.job_store, self.launch_job, self.token_cipher
        )

    def launch_job(self, job: Job, *, urgent: bool = False) -> None:
        """Enqueue the task that runs `job` (blocking; see `tasks.jobs.enqueue_job`)."""
        enqueue_job(self.huey, job, urgent=urgent)

    @cached_property
    def strava_tokens(self) -> AccessTokens | None:
        """Athletes' Strava access tokens (for tasks); None when Strava is not configured."""
        if self.strava is None or self.token_cipher is None:
            return None
        return AccessTokens(
            self.database,
            self.strava,
            self.token_cipher,
            redis_client=self.redis,
            key_prefix=self.settings.redis_key_prefix,
            on_revoked=self.strava_activities.delete,
        )

    @cached_property
    def strava_activities(self) -> ExternalActivities:
        return ExternalActivities(self.database, Source.STRAVA)

    @cached_property
    def staging(self) -> Staging:
        return Staging(self.settings.staging_dir)

    @cached_property
    def imports(self) -> ImportService:
        s = self.settings
        limits = UploadLimits(s.import_max_upload_bytes, s.import_max_file_bytes)
        return ImportService(self.database, self.job_store, self.staging, self.launch_job, limits)

    @cached_property
    def file_activities(self) -> FileActivities:
        s = self.settings
        rule = DuplicateRule(s.import_duplicate_start_seconds, s.import_duplicate_distance_ratio)
        return FileActivities(self.database, rule)

    @cached_property
    def archive_limits(self) -> ArchiveLimits:
        s = self.settings
        return ArchiveLimits(
            max_file_bytes=s.import_max_file_bytes,
            max_total_bytes=s.import_max_archive_bytes,
            max_ratio=s.import_max_compression_ratio,
        )

    @cached_property
    def token_cipher(self) -> TokenCipher | None:
        """Encrypts Strava tokens at rest; None when Strava is not configured."""
        key = self.settings.token_encryption_key
        return None if key is None else TokenCipher(key.get_secret_value())

    @property
    def inprocess_workers(self) -> bool:
        return runs_inprocess_workers(self.settings)

    def async_redis(self) -> AsyncRedis | None:
        """The asyncio Redis client (None without Redis); create it on the event loop that
        uses it. Closed by `aclose`."""
        if self._async_redis is None and self.settings.redis_url is not None:
            self._async_redis = AsyncRedis.from_url(
                self.settings.redis_url.get_secret_value(), **_redis_options(self.settings)
            )
        return self._async_redis

    def close(self) -> None:
        """Release everything, the reverse of building it: Strava client, queue, Redis,
        database."""
        if "strava" in self.__dict__ and self.strava is not None:
            self.strava.close()
        self.huey.close()
        if self.redis is not None:
            self.redis.close()
        self.database.dispose()

    async def aclose(self) -> None:
        if self.versions is not None:
            self.versions.close_async()
        if self._async_redis is not None:
            await self._async_redis.aclose()
            self._async_redis = None
        await asyncio.to_thread(self.close)


def open_runtime(
    settings: Settings,
    *,
    catalog: Iterable[TaskRef[..., Any]] | None = None,
    wait_for_database: bool = True,
) -> Runtime:
    """Build the database (waiting for it, with `STRIDE_DB_CONNECT_ATTEMPTS`), the Redis
    client and the queue with `catalog` installed (default: every Stride task). Blocking:
    from the event loop, run it in a thread. Raises `storage.database.DatabaseUnavailable`."""
    if settings.embedded or settings.redis_url is None:  # SQLite files live there
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = build_database(settings)
    try:
        if wait_for_database:
            database.wait_until_reachable(settings.db_connect_attempts)
        client = (
            redis.Redis.from_url(settings.redis_url.get_secret_value(), **_redis_options(settings))
            if settings.redis_url is not None
            else None
        )
        huey = make_huey(settings, catalog)
    except BaseException:
        database.dispose()
        raise
    versions = build_versions(settings, client)
    if versions is not None:
        database.on_commit(versions.bump)
    runtime = Runtime(settings, database, client, huey, versions)
    # Task bodies reach the runtime through `tasks.queue.current_queue().resources`; tasks
    # that fail for good become dead letters.
    huey.resources = runtime
    huey.on_final_failure = lambda failure: runtime.dead_letters.record(failure)
    return runtime


def build_versions(settings: Settings, client: redis.Redis | None) -> RedisVersions | None:
    """With Redis, always: every process that writes bumps the versions other processes'
    caches read, whether or not it caches itself. Without Redis there is no cache (a
    `stride-worker` beside the server would write unseen)."""
    if client is None:
        return None
    return RedisVersions(client, settings.redis_key_prefix, settings.cache_ttl_seconds)


def build_database(settings: Settings) -> Database:
    """The primary and replica engines, each with its own pool and a span per statement."""
    pool = PoolOptions(
        size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout_seconds=settings.db_pool_timeout_seconds,
        recycle_seconds=settings.db_pool_recycle_seconds,
        pre_ping=settings.db_pool_pre_ping,
    )
    database = Database(settings.primary_database_url, settings.replica_database_urls, pool)
    for engine in [database.primary, *database.replicas]:
        instrument_engine(engine)
    return database


def _redis_options(settings: Settings) -> dict[str, Any]:
    # Short timeouts: callers degrade (local rate limiter, database reads) rather than wait.
    return {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }


# Who consumes the queue ---------------------------------------------------------------------


def runs_inprocess_workers(settings: Settings) -> bool:
    """STRIDE_INPROCESS_WORKERS when set. Otherwise on the embedded default (a laptop: one
    process does everything, Redis or not) and whenever there is no Redis, since a SQLite
    queue is read only by the workers of the process that owns its data directory."""
    if settings.inprocess_workers is not None:
        return settings.inprocess_workers
    return settings.embedded or settings.redis_url is None


def check_queue_consumed(settings: Settings) -> None:
    """Refuse a server whose queue nobody would consume: no Redis (so a SQLite queue in this
    server's data directory) and in-process workers turned off."""
    if settings.redis_url is None and not runs_inprocess_workers(settings):
        _refuse(
            "INPROCESS_WORKERS: false needs STRIDE_REDIS_URL: without Redis tasks are queued in"
            " a SQLite file that only this server's in-process workers read, so nothing would"
            " run them"
        )


def check_server(settings: Settings) -> None:
    """What the server's entry point refuses, beyond `check_queue_consumed`: PostgreSQL
    without Redis, unless in-process workers are asked for explicitly. Servers sharing a
    database are usually several; each would run a private SQLite queue, its own periodic
    tasks and its own Strava budget, so the likely cause is a forgotten STRIDE_REDIS_URL."""
    check_queue_consumed(settings)
    if not settings.embedded and settings.redis_url is None and not settings.inprocess_workers:
        _refuse(
            "REDIS_URL: must be set with STRIDE_DATABASE_URL: tasks are queued in Redis for"
            " stride-worker processes on any host. To run them inside this one server instead"
            " (a SQLite queue in its data directory; not for several servers), set"
            " STRIDE_INPROCESS_WORKERS=true"
        )


def check_worker(settings: Settings) -> None:
    """A worker must consume the queue the servers fill and write to their database: without
    Redis the queue is the server's SQLite file, and on the embedded default the database is
    too, so the worker must run on that host with the server's STRIDE_DATA_DIR, which the
    server has already created. A worker never creates a queue or database of its own."""
    data_dir = settings.data_dir.resolve()
    if settings.redis_url is None and not sqlite_queue_path(settings).exists():
        _refuse(
            f"REDIS_URL: not set, so the queue is {data_dir / 'huey.db'}, which does not"
            " exist: without Redis a worker runs beside the server, with its STRIDE_DATA_DIR"
            " (start the server first); set STRIDE_REDIS_URL to run workers on other hosts"
        )
    if settings.embedded and not (settings.data_dir / DATABASE_FILE).exists():
        _refuse(
            f"DATABASE_URL: not set, so the database is {data_dir / DATABASE_FILE}, which does"
            " not exist: a worker on the embedded database runs beside the server, with its"
            " STRIDE_DATA_DIR (start the server first); set STRIDE_DATABASE_URL to share"
            " PostgreSQL instead"
        )


def _refuse(message: str) -> None:
    raise SettingsError(f"invalid configuration:\n  {ENV_PREFIX}{message}")

"""Assembles the gRPC server: interceptors, servicers, health and reflection, on the
resources that the composition root (`runtime`) builds from settings."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health_pb2_grpc

# `_async` is what grpc_health.v1.health re-exports as `aio`.
from grpc_health.v1._async import HealthServicer
from grpc_interceptor.server import AsyncServerInterceptor
from redis.asyncio import Redis
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    analytics_pb2,
    analytics_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    sync_pb2,
    sync_pb2_grpc,
)

from core.metrics_endpoint import MetricsEndpoint
from core.settings import ADMIN_TOKEN_FILE, Settings
from domain import derived
from runtime import Runtime, check_queue_consumed, open_runtime
from server import listen, reflection
from server.blocking import BlockingRunner
from server.cache import Cache, ReadCache, Uncached, fingerprint
from server.clientaddress import TrustedProxies
from server.health import HealthMonitor
from server.interceptors.admission import ConcurrencyLimitInterceptor
from server.interceptors.auth import (
    AuthenticationInterceptor,
    Authenticator,
    AuthorizationInterceptor,
)
from server.interceptors.chain import InterceptorChain
from server.interceptors.errors import ErrorInterceptor
from server.interceptors.ratelimit import (
    AddressRateLimitInterceptor,
    PrincipalRateLimitInterceptor,
    Quotas,
)
from server.interceptors.requests import RequestGuardInterceptor
from server.interceptors.streams import StreamInterceptor
from server.interceptors.telemetry import TelemetryInterceptor
from server.ratelimit import RateLimiter
from server.servicers.activities import ActivityServicer
from server.servicers.admin import AdminServicer
from server.servicers.analytics import AnalyticsServicer
from server.servicers.athletes import AthleteServicer
from server.servicers.jobs import JobServicer
from server.servicers.sync import SyncServicer
from services.tokens import AccessTokenService
from storage import migrate
from storage.database import Database
from storage.redislink import RedisLink, Unsupported
from tasks.consumer import InProcessWorkers, quiet_huey_logging

log = structlog.get_logger(__name__)
MIGRATIONS = Path(migrate.__file__).parent / "migrations" / "versions"

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (athlete_pb2, "AthleteService"),
        (activity_pb2, "ActivityService"),
        (analytics_pb2, "AnalyticsService"),
        (job_pb2, "JobService"),
        (sync_pb2, "SyncService"),
        (admin_pb2, "AdminService"),
    )
)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    monitor: HealthMonitor
    database: Database
    redis: Redis | None
    runner: BlockingRunner
    metrics: MetricsEndpoint | None
    workers: InProcessWorkers | None
    runtime: Runtime

    async def stop(self, grace: float) -> None:
        """Stop accepting calls, let in-flight ones finish within `grace`, release resources."""
        await self.monitor.stop()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.workers is not None:
            # Running tasks get the same grace; unfinished ones go back on the queue.
            await asyncio.to_thread(self.workers.stop)
        await asyncio.to_thread(self.runner.shutdown)
        await self.runtime.aclose()  # queue, Redis, database
        if self.metrics is not None:
            self.metrics.close()
        log.info("server stopped")


def _interceptors(
    settings: Settings, tokens: AccessTokenService, runner: BlockingRunner, limiter: RateLimiter
) -> list[AsyncServerInterceptor]:
    """Outermost first. Telemetry sees the final status that the error layer produces for
    every failure below it. Cheap refusals come before costly checks: the call cap and the
    per-address limit before credentials are looked up; the per-principal limit before
    the request is inspected or authorized, so refused calls spend tokens too."""
    quotas = (
        Quotas(
            limiter,
            principal_rate=settings.rate_limit_principal_per_second,
            principal_burst=settings.rate_limit_principal_burst,
            ip_rate=settings.rate_limit_ip_per_second,
            ip_burst=settings.rate_limit_ip_burst,
            method_costs=settings.rate_limit_method_costs,
        )
        if settings.rate_limit_enabled
        else None
    )
    authenticator = Authenticator(
        settings.admin_token_digest, tokens, runner, settings.auth_cache_seconds
    )
    chain: list[AsyncServerInterceptor | None] = [
        TelemetryInterceptor(TrustedProxies(settings.trusted_proxies)),
        ErrorInterceptor(),
        (
            ConcurrencyLimitInterceptor(settings.max_concurrent_rpcs)
            if settings.max_concurrent_rpcs
            else None
        ),
        AddressRateLimitInterceptor(quotas) if quotas else None,
        AuthenticationInterceptor(authenticator),
        PrincipalRateLimitInterceptor(quotas) if quotas else None,
        RequestGuardInterceptor(settings.max_repeated_field_entries),
        StreamInterceptor(
            quotas,
            max_per_caller=settings.max_streams_per_principal,
            idle_timeout=settings.stream_idle_timeout_seconds,
            bytes_per_token=settings.rate_limit_stream_bytes_per_token,
            upload_bytes_per_token=settings.rate_limit_upload_bytes_per_token,
        ),
        AuthorizationInterceptor(),
    ]
    return [layer for layer in chain if layer is not None]


async def start(
    settings: Settings, *, interceptors: bool = True, run_workers: bool = True
) -> RunningServer:
    """Build and start the server. `interceptors=False` exists for the benchmark baseline.
    `run_workers=False` leaves the in-process workers (if settings want them) to a sibling
    server process of the same supervisor, so periodic tasks are scheduled once per host
    (server.supervisor). Raises `SettingsError` for a queue nobody would consume (see
    `runtime.check_server` for what the entry point refuses besides)."""
    check_queue_consumed(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    runtime = await asyncio.to_thread(open_runtime, settings)
    try:
        return await _start(settings, runtime, interceptors=interceptors, run_workers=run_workers)
    except BaseException:
        await runtime.aclose()
        raise


async def _start(
    settings: Settings, runtime: Runtime, *, interceptors: bool, run_workers: bool
) -> RunningServer:
    database = runtime.database
    if settings.should_migrate_at_startup:
        await asyncio.to_thread(migrate.upgrade, database.primary)

    runner = BlockingRunner(settings.db_executor_threads)
    tokens = runtime.tokens
    redis = runtime.async_redis()
    limiter = RateLimiter(redis, settings.redis_key_prefix)
    huey = runtime.huey

    chain = [InterceptorChain(_interceptors(settings, tokens, runner, limiter))]
    server = grpc.aio.server(
        interceptors=chain if interceptors else [],
        options=listen.server_options(reuse_port=settings.reuse_port),
    )
    cache = _read_cache(settings, runtime, redis)
    health = HealthServicer()
    monitor = HealthMonitor(
        health,
        SERVICE_NAMES,
        database=database,
        run=runner,
        redis=redis,
        huey=huey,
        limiter=limiter,
        interval=settings.health_check_interval_seconds,
        strava=runtime.strava,
    )
    athlete_pb2_grpc.add_AthleteServiceServicer_to_server(
        AthleteServicer(runtime.athletes, tokens, runner, cache), server
    )
    activity_pb2_grpc.add_ActivityServiceServicer_to_server(
        ActivityServicer(
            runtime.activities, runtime.imports, runner, settings.sample_chunk_size, cache
        ),
        server,
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(
            monitor,
            runtime.admin_dead_letters,
            runner,
            strava=runtime.strava,
            limiter=limiter,
            cache=cache,
        ),
        server,
    )
    # Not built yet: the generated base classes raise NotImplementedError -> UNIMPLEMENTED.
    analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(
        AnalyticsServicer(runtime.analytics, runtime.records, runner), server
    )
    job_pb2_grpc.add_JobServiceServicer_to_server(
        JobServicer(runtime.jobs, runtime.job_bus, runner, settings.watch_heartbeat_seconds),
        server,
    )
    sync_pb2_grpc.add_SyncServiceServicer_to_server(
        SyncServicer(runtime.strava_service, runner), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable(server, [*SERVICE_NAMES, "grpc.health.v1.Health"])

    port = listen.add_port(server, settings.listen_address, reuse_port=settings.reuse_port)
    # Both ports are bound before serving starts, so a busy one leaves nothing running.
    metrics = MetricsEndpoint(settings.metrics_address) if settings.metrics_address else None
    await server.start()
    await monitor.start()

    workers = None
    if runtime.inprocess_workers and run_workers:
        quiet_huey_logging(settings.log_level)
        workers = InProcessWorkers(huey, settings.huey_workers, settings.shutdown_grace_seconds)
        workers.start()

    host = settings.listen_address.rpartition(":")[0]
    log.info(
        "server started",
        address=f"{host}:{port}",
        port=port,
        metrics_port=metrics.port if metrics else None,
        database=database.primary.url.render_as_string(hide_password=True),
        queue=huey.describe(),
        inprocess_workers=settings.huey_workers if workers else 0,
        admin_token_file=(
            str((settings.data_dir / ADMIN_TOKEN_FILE).resolve())
            if settings.admin_token is None
            else None
        ),
    )
    return RunningServer(
        server, port, health, monitor, database, redis, runner, metrics, workers, runtime
    )


def _read_cache(settings: Settings, runtime: Runtime, redis: Redis | None) -> Cache:
    versions = runtime.versions
    if versions is None or redis is None or settings.redis_url is None:
        return Uncached()
    try:
        link = RedisLink(settings.redis_url.get_secret_value(), settings.redis_timeout_seconds)
    except Unsupported:  # TLS: redis-py's client speaks it
        link = None
    versions.use_async(redis, link)
    return ReadCache(
        versions,
        redis,
        key_prefix=settings.redis_key_prefix,
        fingerprint=_response_fingerprint(settings),
        ttl_seconds=settings.cache_ttl_seconds,
        local_entries=settings.cache_local_entries,
        enabled=settings.cache_enabled,
    )


def _response_fingerprint(settings: Settings) -> str:
    """What shapes a cached response besides the data: the release, the contract, the
    schema, the derived-value algorithms, paging settings and the page-token key."""
    try:
        release = metadata.version("stride")
    except metadata.PackageNotFoundError:
        release = "unknown"
    schema = sorted(path.name for path in MIGRATIONS.glob("*.py"))
    contract = hashlib.blake2b(
        activity_pb2.DESCRIPTOR.serialized_pb + athlete_pb2.DESCRIPTOR.serialized_pb
    ).hexdigest()
    page_key = hashlib.blake2b(settings.signing_key, digest_size=8).hexdigest()
    return fingerprint(
        release,
        contract,
        schema,
        derived.VERSION,
        settings.default_page_size,
        settings.max_page_size,
        page_key,
    )


async def serve(
    settings: Settings,
    *,
    run_workers: bool = True,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully. The handlers are in place
    before startup, so a stop requested while starting is honoured once started.
    `on_ready` runs once the server serves (a supervised process tells its parent)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    running = await start(settings, run_workers=run_workers)
    if on_ready is not None:
        on_ready()
    await stopping.wait()
    log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)

"""The composition root: builds storage, services, interceptors, servicers and the server."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

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
    sync_pb2,
    sync_pb2_grpc,
)

from core.settings import ADMIN_TOKEN_FILE, Settings
from core.telemetry import instrument_engine
from domain.pagination import PageTokens
from server import listen, reflection
from server.blocking import BlockingRunner
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
from server.metrics import MetricsEndpoint
from server.ratelimit import RateLimiter
from server.servicers.activities import ActivityServicer
from server.servicers.admin import AdminServicer
from server.servicers.athletes import AthleteServicer
from services.activities import ActivityService
from services.athletes import AthleteService
from services.paging import Paging
from services.tokens import AccessTokenService
from storage import migrate
from storage.database import Database, PoolOptions
from tasks.queue import InProcessWorkers, make_huey

log = structlog.get_logger(__name__)

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (athlete_pb2, "AthleteService"),
        (activity_pb2, "ActivityService"),
        (analytics_pb2, "AnalyticsService"),
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

    async def stop(self, grace: float) -> None:
        """Stop accepting calls, let in-flight ones finish within `grace`, release resources."""
        await self.monitor.stop()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.workers is not None:
            await asyncio.to_thread(self.workers.stop)
        await asyncio.to_thread(self.runner.shutdown)
        self.database.dispose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.metrics is not None:
            self.metrics.close()
        log.info("server stopped")


def build_database(settings: Settings) -> Database:
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
        TelemetryInterceptor(),
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
        ),
        AuthorizationInterceptor(),
    ]
    return [layer for layer in chain if layer is not None]


async def start(settings: Settings, *, interceptors: bool = True) -> RunningServer:
    """Build and start the server. `interceptors=False` exists for the benchmark baseline."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = build_database(settings)
    await asyncio.to_thread(database.wait_until_reachable, settings.db_connect_attempts)
    if settings.should_migrate_at_startup:
        await asyncio.to_thread(migrate.upgrade, database.primary)

    runner = BlockingRunner(settings.db_executor_threads)
    paging = Paging(
        PageTokens(settings.signing_key), settings.default_page_size, settings.max_page_size
    )
    tokens = AccessTokenService(database, paging)
    redis = None
    if settings.redis_url is not None:
        redis = Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
    limiter = RateLimiter(redis, settings.redis_key_prefix)
    huey = make_huey(settings)

    chain = [InterceptorChain(_interceptors(settings, tokens, runner, limiter))]
    server = grpc.aio.server(
        interceptors=chain if interceptors else [],
        options=listen.server_options(reuse_port=settings.reuse_port),
    )
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
    )
    athlete_pb2_grpc.add_AthleteServiceServicer_to_server(
        AthleteServicer(AthleteService(database, paging), tokens, runner), server
    )
    activity_pb2_grpc.add_ActivityServiceServicer_to_server(
        ActivityServicer(ActivityService(database, paging), runner, settings.sample_chunk_size),
        server,
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(monitor), server)
    # Not built yet: the generated base classes raise NotImplementedError -> UNIMPLEMENTED.
    analytics = analytics_pb2_grpc.AnalyticsServiceServicer()  # type: ignore[abstract]
    sync = sync_pb2_grpc.SyncServiceServicer()  # type: ignore[abstract]
    analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(analytics, server)
    sync_pb2_grpc.add_SyncServiceServicer_to_server(sync, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable(server, [*SERVICE_NAMES, "grpc.health.v1.Health"])

    port = listen.add_port(server, settings.listen_address, reuse_port=settings.reuse_port)
    # Both ports are bound before serving starts, so a busy one leaves nothing running.
    metrics = MetricsEndpoint(settings.metrics_address) if settings.metrics_address else None
    await server.start()
    await monitor.start()

    workers = None
    if settings.embedded:
        workers = InProcessWorkers(huey, settings.huey_workers)
        workers.start()

    host = settings.listen_address.rpartition(":")[0]
    log.info(
        "server started",
        address=f"{host}:{port}",
        port=port,
        metrics_port=metrics.port if metrics else None,
        database=database.primary.url.render_as_string(hide_password=True),
        admin_token_file=(
            str((settings.data_dir / ADMIN_TOKEN_FILE).resolve())
            if settings.admin_token is None
            else None
        ),
    )
    return RunningServer(server, port, health, monitor, database, redis, runner, metrics, workers)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)

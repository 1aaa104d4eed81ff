"""Dependency-aware health: probes the database, Redis and the task queue on an interval.

Health service names: "" and every stride.v1 service follow the database (NOT_SERVING
when it is unreachable); `readiness` likewise; `liveness` stays SERVING while the
process runs; `dependency.<name>` reports each dependency, so a lost Redis shows as
degraded without failing readiness.

With a Strava application configured, the non-critical `strava` check reads the shared
budget and circuit breaker (never Strava itself): unhealthy while the circuit is not closed
(open, or half-open with its single trial call in flight) or the budget is spent, with an
error saying which and until when. Like Redis, it degrades; it never fails readiness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from huey import Huey
from redis.asyncio import Redis

from core import metrics
from server.blocking import BlockingRunner
from server.ratelimit import RateLimiter
from storage.database import Database
from tasks.strava import StravaClient

log = structlog.get_logger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class DependencyDown(Exception):
    """A probe's finding (not a failure of the probe): its message is the check's error."""


@dataclass(frozen=True)
class DependencyCheck:
    dependency: str
    healthy: bool
    critical: bool
    last_check_time: dt.datetime
    latency: dt.timedelta
    error: str


class HealthMonitor:
    def __init__(
        self,
        servicer: HealthServicer,
        service_names: tuple[str, ...],
        *,
        database: Database,
        run: BlockingRunner,
        redis: Redis | None,
        huey: Huey,
        limiter: RateLimiter,
        interval: float,
        strava: StravaClient | None = None,
    ) -> None:
        self._servicer = servicer
        self._service_names = service_names
        self._database = database
        self._run = run
        self._redis = redis
        self._huey = huey
        self._limiter = limiter
        self._interval = interval
        self._strava = strava
        self.checks: dict[str, DependencyCheck] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def overall(self) -> str:
        if any(c.critical and not c.healthy for c in self.checks.values()):
            return "NOT_SERVING"
        if any(not c.healthy for c in self.checks.values()):
            return "DEGRADED"
        return "SERVING"

    async def start(self) -> None:
        await self.check_once()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check_once()
            except Exception:
                log.exception("health check failed")

    async def check_once(self) -> None:
        probes: list[tuple[str, bool, Callable[[], Awaitable[object]]]] = [
            ("database", True, lambda: self._run(self._database.ping)),
            ("task_queue", False, self._probe_queue),
        ]
        if self._redis is not None:
            probes.append(("redis", False, self._redis.ping))
        if self._strava is not None:
            probes.append(("strava", False, lambda: self._run(self._check_strava)))
        results = await asyncio.gather(*(self._probe(*probe) for probe in probes))
        for check in results:
            previous = self.checks.get(check.dependency)
            if previous is None or previous.healthy != check.healthy:
                log.info("dependency health", dependency=check.dependency,
                         healthy=check.healthy, error=check.error)  # fmt: skip
            self.checks[check.dependency] = check
            metrics.DEPENDENCY_UP.labels(check.dependency).set(int(check.healthy))
        if "redis" in self.checks:
            self._limiter.mark_redis(self.checks["redis"].healthy)
        for label, (checked_out, overflow) in self._database.pool_status().items():
            metrics.DB_POOL_CHECKED_OUT.labels(label).set(checked_out)
            metrics.DB_POOL_OVERFLOW.labels(label).set(overflow)
        await self._publish()

    async def _probe_queue(self) -> None:
        depth = await self._run(self._huey.pending_count)
        metrics.QUEUE_DEPTH.set(depth)

    def _check_strava(self) -> None:
        """Blocking (the snapshots read Redis when configured): raise DependencyDown while
        Strava may not be called."""
        assert self._strava is not None
        problems = []
        circuit = self._strava.circuit.snapshot()
        if circuit.state != "closed":
            state = circuit.state.replace("_", "-")
            until = f" until {_utc(circuit.retry_at)}" if circuit.retry_at is not None else ""
            problems.append(f"circuit {state}{until} after {circuit.failures} consecutive failures")
        budget = self._strava.budget.snapshot()
        if budget.exhausted_until is not None:
            spent = ", ".join(
                f"{c.name} {c.usage + c.reserved}/{c.limit}"
                for c in budget.counters
                if c.usage + c.reserved >= c.limit
            )
            problems.append(f"budget exhausted ({spent}) until {_utc(budget.exhausted_until)}")
        if problems:
            raise DependencyDown("; ".join(problems))

    async def _probe(
        self, name: str, critical: bool, probe: Callable[[], Awaitable[object]]
    ) -> DependencyCheck:
        started = time.perf_counter()
        error = ""
        try:
            await asyncio.wait_for(probe(), timeout=max(1.0, self._interval))
        except DependencyDown as exc:
            error = str(exc)[:500] or "down"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        return DependencyCheck(
            dependency=name,
            healthy=not error,
            critical=critical,
            last_check_time=dt.datetime.now(dt.UTC),
            latency=dt.timedelta(seconds=time.perf_counter() - started),
            error=error,
        )

    async def _publish(self) -> None:
        ready = SERVING if self.overall != "NOT_SERVING" else NOT_SERVING
        for name in ("", "readiness", *self._service_names):
            await self._servicer.set(name, ready)
        await self._servicer.set("liveness", SERVING)
        for check in self.checks.values():
            status = SERVING if check.healthy else NOT_SERVING
            await self._servicer.set(f"dependency.{check.dependency}", status)


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")

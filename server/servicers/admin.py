"""AdminService: operator views: dependency health, dead letters and rate-limit state."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2, struct_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from redis.exceptions import RedisError
from stride.v1 import admin_pb2, admin_pb2_grpc

from domain import names
from domain.errors import Unavailable
from domain.jobs import DeadLetter
from server.blocking import BlockingRunner
from server.cache import Cache, Uncached
from server.convert.common import datetime_to_timestamp
from server.health import HealthMonitor
from server.ratelimit import RateLimiter
from services.dead_letters import DeadLetterService, dead_letter_name, parse_dead_letter
from storage.dataversions import VersionsUnavailable
from tasks.strava import BudgetSnapshot, CircuitSnapshot, StravaClient

Context = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        health: HealthMonitor,
        dead_letters: DeadLetterService,
        run: BlockingRunner,
        *,
        strava: StravaClient | None = None,
        limiter: RateLimiter | None = None,
        cache: Cache | None = None,
    ) -> None:
        self._health = health
        self._dead_letters = dead_letters
        self._run = run
        self._strava = strava
        self._limiter = limiter
        self._cache = cache or Uncached()

    async def GetDependencyHealth(
        self, request: admin_pb2.GetDependencyHealthRequest, context: Context
    ) -> admin_pb2.DependencyHealth:
        checks = []
        for check in self._health.checks.values():
            latency = duration_pb2.Duration()
            latency.FromTimedelta(check.latency)
            checks.append(
                admin_pb2.DependencyCheck(
                    dependency=check.dependency,
                    healthy=check.healthy,
                    critical=check.critical,
                    last_check_time=datetime_to_timestamp(check.last_check_time),
                    latency=latency,
                    error=check.error,
                )
            )
        return admin_pb2.DependencyHealth(overall=self._health.overall, checks=checks)

    async def ListDeadLetters(
        self, request: admin_pb2.ListDeadLettersRequest, context: Context
    ) -> admin_pb2.ListDeadLettersResponse:
        letters, token = await self._run(
            self._dead_letters.list_page, request.page_size, request.page_token
        )
        return admin_pb2.ListDeadLettersResponse(
            dead_letters=[_dead_letter_to_proto(letter) for letter in letters],
            next_page_token=token,
        )

    async def RetryDeadLetter(
        self, request: admin_pb2.RetryDeadLetterRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._run(self._dead_letters.retry, parse_dead_letter(request.name, "name"))
        return empty_pb2.Empty()

    async def DeleteDeadLetter(
        self, request: admin_pb2.DeleteDeadLetterRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._run(self._dead_letters.delete, parse_dead_letter(request.name, "name"))
        return empty_pb2.Empty()

    async def GetRateLimitState(
        self, request: admin_pb2.GetRateLimitStateRequest, context: Context
    ) -> admin_pb2.RateLimitState:
        """The Strava budget and circuit as every worker sees them (read from Redis when
        configured: a blocking call, hence the runner), and whether this process fell back
        to local state. `local_fallback` is false when Redis is not configured at all (local
        state is then the design, not a fallback). `buckets` stays empty: the API's token
        buckets are leased and spent inside the rate limiter, which does not expose them;
        `request.key` therefore selects nothing yet."""
        state = admin_pb2.RateLimitState(
            local_fallback=self._limiter is not None and self._limiter.using_fallback
        )
        if self._strava is not None:
            budget, circuit = await self._run(_strava_snapshots, self._strava)
            state.strava.CopyFrom(_budget_to_proto(budget))
            state.strava_circuit.CopyFrom(_circuit_to_proto(circuit))
            # A snapshot that could not reach a configured Redis read this process's state.
            if self._strava.budget.redis is not None and not (budget.shared and circuit.shared):
                state.local_fallback = True
        return state

    # Built by the caching issue.

    async def FlushCache(
        self, request: admin_pb2.FlushCacheRequest, context: Context
    ) -> admin_pb2.FlushCacheResponse:
        """Every process's copies become unreachable; those under `prefix` (a resource
        name prefix, such as `athletes/{id}`) are deleted from Redis."""
        try:
            deleted = await self._cache.flush(request.prefix)
        except (VersionsUnavailable, RedisError, OSError) as exc:
            raise Unavailable(
                f"the cache cannot be flushed while Redis is unreachable: {exc}",
                retry_after_seconds=1.0,
                reason="CACHE_UNAVAILABLE",
            ) from exc
        return admin_pb2.FlushCacheResponse(deleted_keys=deleted)


def _strava_snapshots(strava: StravaClient) -> tuple[BudgetSnapshot, CircuitSnapshot]:
    return strava.budget.snapshot(), strava.circuit.snapshot()


def _epoch_to_timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    return datetime_to_timestamp(dt.datetime.fromtimestamp(seconds, dt.UTC))


# BudgetSnapshot counter names -> StravaBudget fields.
_WINDOW_FIELDS = {
    "overall_short": "overall_15_minutes",
    "overall_long": "overall_daily",
    "read_short": "read_15_minutes",
    "read_long": "read_daily",
}

_CIRCUIT_STATES = {
    "closed": admin_pb2.CircuitState.STATE_CLOSED,
    "open": admin_pb2.CircuitState.STATE_OPEN,
    "half_open": admin_pb2.CircuitState.STATE_HALF_OPEN,
}


def _budget_to_proto(snapshot: BudgetSnapshot) -> admin_pb2.StravaBudget:
    budget = admin_pb2.StravaBudget()
    for counter in snapshot.counters:
        window = getattr(budget, _WINDOW_FIELDS[counter.name])
        # As Strava reported it (plus calls that got no answer); calls in flight are not
        # usage yet, though they count towards resume_time.
        window.usage = counter.usage
        window.limit = counter.limit
        window.reset_time.CopyFrom(_epoch_to_timestamp(counter.resets_at))
    if snapshot.reported_at is not None:
        budget.update_time.CopyFrom(_epoch_to_timestamp(snapshot.reported_at))
    if snapshot.exhausted_until is not None:
        budget.resume_time.CopyFrom(_epoch_to_timestamp(snapshot.exhausted_until))
    return budget


def _circuit_to_proto(snapshot: CircuitSnapshot) -> admin_pb2.CircuitState:
    # The breaker keeps no error text or failure time in its snapshot: last_error and
    # last_failure_time stay unset.
    circuit = admin_pb2.CircuitState(
        state=_CIRCUIT_STATES.get(snapshot.state, admin_pb2.CircuitState.STATE_UNSPECIFIED),
        consecutive_failures=snapshot.failures,
    )
    if snapshot.state == "open" and snapshot.retry_at is not None:
        circuit.open_until.CopyFrom(_epoch_to_timestamp(snapshot.retry_at))
    return circuit


def _dead_letter_to_proto(letter: DeadLetter) -> admin_pb2.DeadLetter:
    error_type = str(letter.error.get("type", ""))
    message = str(letter.error.get("message", ""))
    info = error_details_pb2.ErrorInfo(
        reason="TASK_FAILED", domain="stride.dev", metadata={"exception_type": error_type}
    )
    status = status_pb2.Status(
        code=code_pb2.UNKNOWN, message=f"{error_type}: {message}" if error_type else message
    )
    status.details.add().Pack(info)
    arguments = struct_pb2.Struct()
    arguments.update(letter.args)
    job = ""
    if letter.job_id is not None and letter.job_athlete_id is not None:
        job = names.job_name(letter.job_athlete_id, letter.job_id)
    return admin_pb2.DeadLetter(
        name=dead_letter_name(letter.id),
        task=letter.task_name,
        job=job,
        error=status,
        attempts=letter.attempts,
        create_time=datetime_to_timestamp(letter.create_time),
        arguments=arguments,
        request_id=letter.request_id,
        trace_id=letter.trace_id,
    )

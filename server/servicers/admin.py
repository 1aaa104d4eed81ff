"""AdminService: operator views. Only dependency health exists yet."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2
from stride.v1 import admin_pb2, admin_pb2_grpc

from server.convert.common import datetime_to_timestamp
from server.health import HealthMonitor

Context = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, health: HealthMonitor) -> None:
        self._health = health

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

    # Built by the jobs, caching and Strava issues.
    async def ListDeadLetters(
        self, request: admin_pb2.ListDeadLettersRequest, context: Context
    ) -> admin_pb2.ListDeadLettersResponse:
        raise NotImplementedError

    async def RetryDeadLetter(
        self, request: admin_pb2.RetryDeadLetterRequest, context: Context
    ) -> empty_pb2.Empty:
        raise NotImplementedError

    async def DeleteDeadLetter(
        self, request: admin_pb2.DeleteDeadLetterRequest, context: Context
    ) -> empty_pb2.Empty:
        raise NotImplementedError

    async def GetRateLimitState(
        self, request: admin_pb2.GetRateLimitStateRequest, context: Context
    ) -> admin_pb2.RateLimitState:
        raise NotImplementedError

    async def FlushCache(
        self, request: admin_pb2.FlushCacheRequest, context: Context
    ) -> admin_pb2.FlushCacheResponse:
        raise NotImplementedError

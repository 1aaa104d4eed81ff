"""AdminService: operator views: dependency health and dead letters."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2, empty_pb2, struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from stride.v1 import admin_pb2, admin_pb2_grpc

from domain import names
from domain.jobs import DeadLetter
from server.blocking import BlockingRunner
from server.convert.common import datetime_to_timestamp
from server.health import HealthMonitor
from services.dead_letters import DeadLetterService, dead_letter_name, parse_dead_letter

Context = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, health: HealthMonitor, dead_letters: DeadLetterService, run: BlockingRunner
    ) -> None:
        self._health = health
        self._dead_letters = dead_letters
        self._run = run

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

    # Built by the caching and Strava issues.

    async def GetRateLimitState(
        self, request: admin_pb2.GetRateLimitStateRequest, context: Context
    ) -> admin_pb2.RateLimitState:
        raise NotImplementedError

    async def FlushCache(
        self, request: admin_pb2.FlushCacheRequest, context: Context
    ) -> admin_pb2.FlushCacheResponse:
        raise NotImplementedError


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

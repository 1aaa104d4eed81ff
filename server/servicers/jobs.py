"""JobService: protobuf <-> domain translation around services.jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from stride.v1 import job_pb2, job_pb2_grpc

from core.job_bus import JobEventBus
from domain import names
from domain.errors import Violations
from domain.jobs import JobEvent, JobKind, JobState
from server.authorization import EVERY_ATHLETE
from server.blocking import BlockingRunner
from server.convert import jobs as convert
from server.interceptors.base import when_done
from services.jobs import JobService, watch

Context = grpc.aio.ServicerContext[Any, Any]
# Events read ahead of a slow watcher; beyond this the reader waits for it.
WATCH_BUFFER = 64


class _End:
    """The watch ended after the job's last event."""


class JobServicer(job_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        jobs: JobService,
        bus: JobEventBus | None,
        run: BlockingRunner,
        heartbeat_seconds: float,
    ) -> None:
        self._jobs = jobs
        self._bus = bus
        self._run = run
        self._heartbeat_seconds = heartbeat_seconds

    async def GetJob(self, request: job_pb2.GetJobRequest, context: Context) -> job_pb2.Job:
        athlete_id, job_id = names.parse_job(request.name, "name")
        job = await self._run(self._jobs.get, athlete_id, job_id)
        return convert.job_to_proto(job)

    async def ListJobs(
        self, request: job_pb2.ListJobsRequest, context: Context
    ) -> job_pb2.ListJobsResponse:
        violations = Violations()
        athlete_id: str | None = None
        if request.parent != names.athlete_name(EVERY_ATHLETE):
            athlete_id = names.parse_athlete(request.parent, "parent", violations)
        states: set[JobState] = set()
        for i, value in enumerate(request.states):
            if (state := convert.state_from_proto(value, f"states[{i}]", violations)) is not None:
                states.add(state)
        kinds: set[JobKind] = set()
        for i, kind_value in enumerate(request.kinds):
            if (kind := convert.kind_from_proto(kind_value, f"kinds[{i}]", violations)) is not None:
                kinds.add(kind)
        violations.raise_if_any()
        jobs, token = await self._run(
            self._jobs.list_page, athlete_id, states, kinds, request.page_size, request.page_token
        )
        return job_pb2.ListJobsResponse(
            jobs=[convert.job_to_proto(job) for job in jobs], next_page_token=token
        )

    async def CancelJob(self, request: job_pb2.CancelJobRequest, context: Context) -> job_pb2.Job:
        athlete_id, job_id = names.parse_job(request.name, "name")
        job = await self._run(self._jobs.cancel, athlete_id, job_id)
        return convert.job_to_proto(job)

    async def WatchJob(
        self, request: job_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[job_pb2.JobEvent]:
        athlete_id, job_id = names.parse_job(request.name, "name")
        after = request.after_sequence
        job = await self._run(self._jobs.open_watch, athlete_id, job_id, after)
        last = after
        if after == job.last_event_sequence:
            # Nothing to replay: the first message goes at once all the same.
            yield convert.heartbeat_to_proto(job, last)
            if job.state.terminal:
                return

        # The watch runs in its own task feeding a queue, so waiting for the next event can
        # time out (a heartbeat) without ever cancelling the watch itself.
        queue: asyncio.Queue[JobEvent | _End | Exception] = asyncio.Queue(WATCH_BUFFER)

        async def pump() -> None:
            try:
                async with contextlib.aclosing(
                    watch(self._jobs.store, self._bus, job_id, after)
                ) as events:
                    async for event in events:
                        await queue.put(event)
                await queue.put(_End())
            except Exception as exc:  # handed to the call, which raises it
                await queue.put(exc)

        task = asyncio.create_task(pump(), name=f"watch {job_id}")

        def stop_watch() -> None:
            # A client that goes away leaves this generator suspended, not closed (its
            # `finally` waits for garbage collection): stop the watch when the call ends.
            task.cancel()

        when_done(context, stop_watch)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self._heartbeat_seconds)
                except TimeoutError:
                    current = await self._run(self._jobs.get, athlete_id, job_id)
                    yield convert.heartbeat_to_proto(current, last)
                    continue
                if isinstance(item, _End):
                    return
                if isinstance(item, Exception):
                    raise item
                last = item.sequence
                if item.ends_job:
                    # The outcome (result, error) is on the job, not the stored event.
                    final = await self._run(self._jobs.get, athlete_id, job_id)
                    yield convert.event_to_proto(item, final)
                    return
                yield convert.event_to_proto(item)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

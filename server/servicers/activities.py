"""ActivityService: protobuf <-> domain translation around services.activities."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from stride.v1 import activity_pb2, activity_pb2_grpc, job_pb2

from domain import names
from domain.activities import EDITABLE_FIELDS, ActivityFilter, SampleQuery
from domain.errors import InvalidArgument, Violations
from domain.jobs import Job
from server.blocking import BlockingRunner
from server.cache import Cache, Uncached
from server.convert import activities as convert
from server.convert import jobs as convert_jobs
from server.convert.common import fields_to_update, timestamp_to_datetime
from services.activities import ActivityService
from services.imports import ImportService, Upload

Context = grpc.aio.ServicerContext[Any, Any]
MAX_CHUNK_SIZE = 10_000
MAX_UPLOAD_CHUNK = 2**20
CANCEL_GRACE_SECONDS = 0.05


class ActivityServicer(activity_pb2_grpc.ActivityServiceServicer):
    def __init__(
        self,
        activities: ActivityService,
        imports: ImportService,
        run: BlockingRunner,
        chunk_size: int,
        cache: Cache | None = None,
    ) -> None:
        self._activities = activities
        self._imports = imports
        self._run = run
        self._chunk_size = chunk_size
        self._cache = cache or Uncached()

    async def CreateActivity(
        self, request: activity_pb2.CreateActivityRequest, context: Context
    ) -> activity_pb2.Activity:
        violations = Violations()
        athlete_id = names.parse_athlete(request.parent, "parent", violations)
        edit, measurements = convert.new_activity_from_proto(request.activity, violations)
        activity = await self._run(
            self._activities.create_manual,
            athlete_id,
            edit,
            measurements,
            request.request_id,
            violations,
        )
        return convert.activity_to_proto(activity)

    async def GetActivity(
        self, request: activity_pb2.GetActivityRequest, context: Context
    ) -> activity_pb2.Activity:
        athlete_id, activity_id = names.parse_activity(request.name, "name")

        async def load() -> activity_pb2.Activity:
            activity = await self._run(self._activities.get, athlete_id, activity_id)
            return convert.activity_to_proto(activity)

        return await self._cache.read(
            athlete_id, request.name, request, activity_pb2.Activity, load
        )

    async def UpdateActivity(
        self, request: activity_pb2.UpdateActivityRequest, context: Context
    ) -> activity_pb2.Activity:
        violations = Violations()
        athlete_id, activity_id = names.parse_activity(
            request.activity.name, "activity.name", violations
        )
        fields = fields_to_update(
            request.activity,
            request.update_mask if request.HasField("update_mask") else None,
            mutable=EDITABLE_FIELDS,
            immutable=convert.IMMUTABLE,
            output_only=convert.OUTPUT_ONLY,
            violations=violations,
        )
        changes = convert.edit_values(request.activity, fields, violations)
        violations.raise_if_any()
        activity = await self._run(
            self._activities.update, athlete_id, activity_id, changes, request.activity.etag
        )
        return convert.activity_to_proto(activity)

    async def DeleteActivity(
        self, request: activity_pb2.DeleteActivityRequest, context: Context
    ) -> empty_pb2.Empty:
        athlete_id, activity_id = names.parse_activity(request.name, "name")
        await self._run(self._activities.delete, athlete_id, activity_id, request.etag)
        return empty_pb2.Empty()

    async def ListActivities(
        self, request: activity_pb2.ListActivitiesRequest, context: Context
    ) -> activity_pb2.ListActivitiesResponse:
        violations = Violations()
        athlete_id = names.parse_athlete(request.parent, "parent", violations)
        where = ActivityFilter(
            start_from=(
                timestamp_to_datetime(request.start_time_from, "start_time_from", violations)
                if request.HasField("start_time_from")
                else None
            ),
            start_to=(
                timestamp_to_datetime(request.start_time_to, "start_time_to", violations)
                if request.HasField("start_time_to")
                else None
            ),
            sport_types=tuple(
                sorted(
                    {
                        convert.sport_type_from_proto(value, f"sport_types[{i}]", violations)
                        for i, value in enumerate(request.sport_types)
                    }
                )
            ),
            descending=request.descending,
            source_job_id=_source_job(request.source_job, athlete_id, violations),
        )
        violations.raise_if_any()

        def page() -> activity_pb2.ListActivitiesResponse:
            # Built on the database thread: a page of messages would hold the event loop.
            activities, token = self._activities.list_page(
                athlete_id,
                where,
                request.page_size,
                request.page_token,
                primary=self._cache.consistent,
            )
            return activity_pb2.ListActivitiesResponse(
                activities=[convert.activity_to_proto(a) for a in activities],
                next_page_token=token,
            )

        return await self._cache.read(
            athlete_id,
            f"{request.parent}/activities",
            request,
            activity_pb2.ListActivitiesResponse,
            lambda: self._run(page),
        )

    async def StreamActivitySamples(
        self, request: activity_pb2.StreamActivitySamplesRequest, context: Context
    ) -> AsyncIterator[activity_pb2.StreamActivitySamplesResponse]:
        violations = Violations()
        athlete_id, activity_id = names.parse_activity(request.name, "name", violations)
        query = _sample_query(request, self._chunk_size, violations)
        violations.raise_if_any()
        # Every chunk comes from the replica that found the activity.
        samples = await self._run(self._activities.open_samples, athlete_id, activity_id)

        def next_chunk(
            after: dt.datetime | None,
        ) -> tuple[activity_pb2.StreamActivitySamplesResponse, int, dt.datetime | None]:
            # Built on the database thread: thousands of messages would hold the event loop.
            chunk = samples.after(after, query.chunk_size)
            response = activity_pb2.StreamActivitySamplesResponse(
                samples=[convert.sample_to_proto(s, query.channels) for s in chunk]
            )
            return response, len(chunk), chunk[-1].time if chunk else None

        after = None
        while True:
            response, count, after = await self._run(next_chunk, after)
            if count:
                yield response
            if count < query.chunk_size:
                return

    async def UploadActivityFile(
        self,
        request_iterator: AsyncIterator[activity_pb2.UploadActivityFileRequest],
        context: Context,
    ) -> job_pb2.Job:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("content") != "header":
            raise InvalidArgument.one("header", "the first message must be the header")
        header = first.header
        athlete_id = names.parse_athlete(header.parent, "header.parent")

        async def chunks() -> AsyncIterator[bytes]:
            async for request in requests:
                if request.WhichOneof("content") != "chunk":
                    raise InvalidArgument.one("header", "only the first message is a header")
                yield request.chunk

        job = await self._upload(
            athlete_id,
            header.file_name,
            header.size_bytes,
            header.request_id,
            chunks(),
            "header.",
            context,
        )
        return convert_jobs.job_to_proto(job)

    async def UploadActivityFileBody(
        self,
        request_iterator: AsyncIterator[activity_pb2.UploadActivityFileBodyRequest],
        context: Context,
    ) -> job_pb2.Job:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            raise InvalidArgument.one("parent", "is required")
        athlete_id = names.parse_athlete(first.parent, "parent")

        async def chunks() -> AsyncIterator[bytes]:
            yield first.body.data
            async for request in requests:
                yield request.body.data

        job = await self._upload(
            athlete_id, first.file_name, first.size_bytes, first.request_id, chunks(), "", context
        )
        return convert_jobs.job_to_proto(job)

    async def _upload(
        self,
        athlete_id: str,
        file_name: str,
        size_bytes: int,
        request_id: str,
        chunks: AsyncIterator[bytes],
        fields: str,
        context: Context,
    ) -> Job:
        """Stage the chunks as they arrive and start the import job once all are in. A
        call that ends any other way (cut off, cancelled, over a limit) removes what it
        staged. The thread work that opens the staging file and creates the job is shielded
        from the call's cancellation: a staging file opened for a call that is gone is
        removed, and a job being created is created whole (its client just never hears)."""
        opening = asyncio.ensure_future(
            self._run(self._imports.begin, athlete_id, file_name, size_bytes, request_id, fields)
        )
        try:
            upload = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_abort_opened)
            raise
        finishing = False
        try:
            async for chunk in chunks:
                if len(chunk) > MAX_UPLOAD_CHUNK:
                    raise InvalidArgument.one(
                        "chunk", f"chunks are limited to {MAX_UPLOAD_CHUNK} bytes"
                    )
                if chunk:
                    await self._run(upload.add, chunk)
            # A client that cancels (or drops) mid-upload ends the request stream just as
            # a finished one does; its cancellation reaches this task a moment later (the
            # same RST_STREAM, through another completion). Wait that moment before
            # creating the job. A client that declares `size_bytes` is safe either way: a
            # short upload is refused.
            await asyncio.sleep(CANCEL_GRACE_SECONDS)
            if context.cancelled() or context.done():
                raise asyncio.CancelledError
            finishing = True
            return await asyncio.shield(
                self._run(self._imports.finish, athlete_id, upload, file_name, request_id)
            )
        finally:
            if not finishing:
                await asyncio.shield(self._run(upload.abort))


def _abort_opened(opening: asyncio.Future[Upload]) -> None:
    """Remove the staging file of an upload whose call ended while it was being opened."""
    if not opening.cancelled() and opening.exception() is None:
        opening.result().abort()


def _source_job(name: str, athlete_id: str, violations: Violations) -> str | None:
    """The job id of a `source_job` filter, which must be a job of the listed athlete."""
    if not name:
        return None
    job_athlete, job_id = names.parse_job(name, "source_job", violations)
    if job_id and job_athlete != athlete_id:
        violations.add("source_job", "must be a job of `parent`")
    return job_id or None


def _sample_query(
    request: activity_pb2.StreamActivitySamplesRequest, default_chunk: int, violations: Violations
) -> SampleQuery:
    query = SampleQuery(chunk_size=default_chunk)
    if request.chunk_size < 0:
        violations.add("chunk_size", "must not be negative")
    elif request.chunk_size:
        query = dataclasses.replace(query, chunk_size=min(request.chunk_size, MAX_CHUNK_SIZE))
    if request.channels:
        channels = set()
        for i, value in enumerate(request.channels):
            if value not in convert.CHANNEL_FROM_PROTO:
                violations.add(f"channels[{i}]", "must be a known SampleChannel")
            else:
                channels.add(convert.CHANNEL_FROM_PROTO[value])
        query = dataclasses.replace(query, channels=frozenset(channels))
    return query

"""SyncService: protobuf <-> domain translation around services.strava."""

from __future__ import annotations

from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2, json_format
from stride.v1 import job_pb2, sync_pb2, sync_pb2_grpc

from domain import names
from domain.connections import ConnectionView
from domain.errors import InvalidArgument, Violations
from server.blocking import BlockingRunner
from server.convert import jobs as convert_jobs
from server.convert.athletes import STRAVA_STATE_TO_PROTO
from server.convert.common import datetime_to_timestamp, timestamp_to_datetime
from services.strava import StravaService

Context = grpc.aio.ServicerContext[Any, Any]
SUFFIX = "/stravaConnection"


def _athlete(name: str, field: str = "name") -> str:
    """The athlete id in `athletes/{athlete}/stravaConnection`."""
    if not name.endswith(SUFFIX):
        raise InvalidArgument.one(
            field, "is required" if not name else "must match athletes/{athlete}/stravaConnection"
        )
    return names.parse_athlete(name.removesuffix(SUFFIX), field)


def _connection_to_proto(view: ConnectionView) -> sync_pb2.StravaConnection:
    proto = sync_pb2.StravaConnection(
        name=names.athlete_name(view.athlete_id) + SUFFIX,
        state=STRAVA_STATE_TO_PROTO[view.state],
    )
    stored = view.stored
    if stored is not None:
        proto.strava_athlete_id = stored.strava_athlete_id
        proto.granted_scopes.extend(stored.granted_scopes)
        proto.connect_time.CopyFrom(datetime_to_timestamp(stored.connect_time))
        if stored.last_sync_time is not None:
            proto.last_sync_time.CopyFrom(datetime_to_timestamp(stored.last_sync_time))
    return proto


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):
    def __init__(self, strava: StravaService, run: BlockingRunner) -> None:
        self._strava = strava
        self._run = run

    async def GetStravaConnection(
        self, request: sync_pb2.GetStravaConnectionRequest, context: Context
    ) -> sync_pb2.StravaConnection:
        view = await self._run(self._strava.connection, _athlete(request.name))
        return _connection_to_proto(view)

    async def GetStravaAuthorizationUrl(
        self, request: sync_pb2.GetStravaAuthorizationUrlRequest, context: Context
    ) -> sync_pb2.GetStravaAuthorizationUrlResponse:
        url, state = await self._run(
            self._strava.authorization_url, _athlete(request.name), request.redirect_uri
        )
        return sync_pb2.GetStravaAuthorizationUrlResponse(url=url, state=state)

    async def ConnectStrava(
        self, request: sync_pb2.ConnectStravaRequest, context: Context
    ) -> job_pb2.Job:
        job = await self._run(
            self._strava.connect,
            _athlete(request.name),
            request.code,
            request.scope,
            request.state,
            request.request_id,
        )
        return convert_jobs.job_to_proto(job)

    async def DisconnectStrava(
        self, request: sync_pb2.DisconnectStravaRequest, context: Context
    ) -> job_pb2.Job:
        job = await self._run(self._strava.disconnect, _athlete(request.name), request.request_id)
        return convert_jobs.job_to_proto(job)

    async def StartSync(self, request: sync_pb2.StartSyncRequest, context: Context) -> job_pb2.Job:
        violations = Violations()
        athlete_id = _athlete(request.name)
        after = (
            timestamp_to_datetime(request.after, "after", violations)
            if request.HasField("after")
            else None
        )
        violations.raise_if_any()
        job = await self._run(
            self._strava.start_sync, athlete_id, after, request.full, request.request_id
        )
        return convert_jobs.job_to_proto(job)

    async def VerifyStravaWebhook(
        self, request: sync_pb2.VerifyStravaWebhookRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        hub = request.hub
        body = self._strava.verify_webhook(hub.mode, hub.challenge, hub.verify_token)
        return httpbody_pb2.HttpBody(content_type="application/json", data=body)

    async def HandleStravaWebhookEvent(
        self, request: sync_pb2.HandleStravaWebhookEventRequest, context: Context
    ) -> empty_pb2.Empty:
        event = request.event
        payload = {
            "object_type": event.object_type,
            "object_id": event.object_id,
            "aspect_type": event.aspect_type,
            "updates": json_format.MessageToDict(event.updates),
            "owner_id": event.owner_id,
            "subscription_id": event.subscription_id,
            "event_time": event.event_time,
        }
        await self._run(self._strava.accept_webhook_event, payload)
        return empty_pb2.Empty()

"""AthleteService: protobuf <-> domain translation around services.athletes."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from stride.v1 import athlete_pb2, athlete_pb2_grpc

from domain import names
from domain.athletes import PROFILE_FIELDS
from domain.errors import Violations
from server.blocking import BlockingRunner
from server.cache import Cache, Uncached
from server.convert import athletes as convert
from server.convert.common import fields_to_update, timestamp_to_datetime
from server.principal import ADMIN, current_principal
from services.athletes import AthleteService
from services.tokens import AccessTokenService

Context = grpc.aio.ServicerContext[Any, Any]


class AthleteServicer(athlete_pb2_grpc.AthleteServiceServicer):
    def __init__(
        self,
        athletes: AthleteService,
        tokens: AccessTokenService,
        run: BlockingRunner,
        cache: Cache | None = None,
    ) -> None:
        self._athletes = athletes
        self._tokens = tokens
        self._run = run
        self._cache = cache or Uncached()

    async def CreateAthlete(
        self, request: athlete_pb2.CreateAthleteRequest, context: Context
    ) -> athlete_pb2.Athlete:
        violations = Violations()
        profile = convert.profile_from_proto(request.athlete, violations)
        athlete = await self._run(self._athletes.create, profile, request.request_id, violations)
        return convert.athlete_to_proto(athlete)

    async def GetAthlete(
        self, request: athlete_pb2.GetAthleteRequest, context: Context
    ) -> athlete_pb2.Athlete:
        athlete_id = names.parse_athlete(request.name, "name")

        async def load() -> athlete_pb2.Athlete:
            return convert.athlete_to_proto(await self._run(self._athletes.get, athlete_id))

        return await self._cache.read(athlete_id, request.name, request, athlete_pb2.Athlete, load)

    async def UpdateAthlete(
        self, request: athlete_pb2.UpdateAthleteRequest, context: Context
    ) -> athlete_pb2.Athlete:
        violations = Violations()
        athlete_id = names.parse_athlete(request.athlete.name, "athlete.name", violations)
        fields = fields_to_update(
            request.athlete,
            request.update_mask if request.HasField("update_mask") else None,
            mutable=PROFILE_FIELDS,
            immutable=(),
            output_only=convert.OUTPUT_ONLY,
            violations=violations,
        )
        changes = convert.profile_values(request.athlete, fields, violations)
        violations.raise_if_any()
        athlete = await self._run(self._athletes.update, athlete_id, changes, request.athlete.etag)
        return convert.athlete_to_proto(athlete)

    async def DeleteAthlete(
        self, request: athlete_pb2.DeleteAthleteRequest, context: Context
    ) -> empty_pb2.Empty:
        athlete_id = names.parse_athlete(request.name, "name")
        await self._run(self._athletes.delete, athlete_id, request.etag)
        return empty_pb2.Empty()

    async def ListAthletes(
        self, request: athlete_pb2.ListAthletesRequest, context: Context
    ) -> athlete_pb2.ListAthletesResponse:
        athletes, token = await self._run(
            self._athletes.list_page, request.page_size, request.page_token
        )
        return athlete_pb2.ListAthletesResponse(
            athletes=[convert.athlete_to_proto(a) for a in athletes], next_page_token=token
        )

    async def CreateAccessToken(
        self, request: athlete_pb2.CreateAccessTokenRequest, context: Context
    ) -> athlete_pb2.AccessToken:
        violations = Violations()
        athlete_id = names.parse_athlete(request.parent, "parent", violations)
        expire_time = (
            timestamp_to_datetime(
                request.access_token.expire_time, "access_token.expire_time", violations
            )
            if request.access_token.HasField("expire_time")
            else None
        )
        violations.raise_if_any()
        # The interceptor set the principal; without one (no interceptors) the operator calls.
        principal = current_principal.get() or ADMIN
        issued = await self._run(
            self._tokens.issue,
            athlete_id,
            request.access_token.display_name,
            expire_time,
            principal.token,
        )
        return convert.access_token_to_proto(issued.token, issued.secret)

    async def ListAccessTokens(
        self, request: athlete_pb2.ListAccessTokensRequest, context: Context
    ) -> athlete_pb2.ListAccessTokensResponse:
        athlete_id = names.parse_athlete(request.parent, "parent")
        tokens, next_token = await self._run(
            self._tokens.list_page, athlete_id, request.page_size, request.page_token
        )
        return athlete_pb2.ListAccessTokensResponse(
            access_tokens=[convert.access_token_to_proto(t) for t in tokens],
            next_page_token=next_token,
        )

    async def DeleteAccessToken(
        self, request: athlete_pb2.DeleteAccessTokenRequest, context: Context
    ) -> empty_pb2.Empty:
        athlete_id, token_id = names.parse_access_token(request.name, "name")
        await self._run(self._tokens.revoke, athlete_id, token_id)
        return empty_pb2.Empty()

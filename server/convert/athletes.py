"""stride.v1.Athlete <-> domain athletes."""

from __future__ import annotations

from typing import Any

from stride.v1 import athlete_pb2, common_pb2

from domain import names
from domain.athletes import PROFILE_FIELDS, Athlete, AthleteProfile, Sex
from domain.connections import ConnectionState
from domain.errors import Violations
from domain.tokens import AccessToken
from server.convert.common import (
    date_to_domain,
    date_to_proto,
    datetime_to_timestamp,
)

SEX_TO_PROTO = {
    Sex.UNSPECIFIED: common_pb2.SEX_UNSPECIFIED,
    Sex.FEMALE: common_pb2.SEX_FEMALE,
    Sex.MALE: common_pb2.SEX_MALE,
}
SEX_FROM_PROTO = {value: key for key, value in SEX_TO_PROTO.items()}

STRAVA_STATE_TO_PROTO = {
    ConnectionState.NOT_CONNECTED: athlete_pb2.STRAVA_CONNECTION_STATE_NOT_CONNECTED,
    ConnectionState.CONNECTED: athlete_pb2.STRAVA_CONNECTION_STATE_CONNECTED,
    ConnectionState.REVOKED: athlete_pb2.STRAVA_CONNECTION_STATE_REVOKED,
    ConnectionState.CONNECTING: athlete_pb2.STRAVA_CONNECTION_STATE_CONNECTING,
    ConnectionState.DISCONNECTING: athlete_pb2.STRAVA_CONNECTION_STATE_DISCONNECTING,
}

# Paths an update mask may name but that are never written. `etag` is sent back with an
# update as its precondition (AIP-154), not as a value.
OUTPUT_ONLY = ("name", "strava_connection_state", "create_time", "update_time", "etag")


def profile_values(
    message: athlete_pb2.Athlete, fields: tuple[str, ...] | list[str], violations: Violations
) -> dict[str, Any]:
    """Domain values for the named profile fields of an Athlete message."""
    values: dict[str, Any] = {}
    for field in fields:
        path = f"athlete.{field}"
        if field == "birth_date":
            values[field] = date_to_domain(message.birth_date, path, violations)
        elif field == "sex":
            if message.sex not in SEX_FROM_PROTO:
                violations.add(path, "must be a known Sex value")
            values[field] = SEX_FROM_PROTO.get(message.sex, Sex.UNSPECIFIED)
        elif field == "weight_kg":
            values[field] = message.weight_kg if message.HasField("weight_kg") else None
        elif field == "max_heart_rate_bpm":
            has = message.HasField("max_heart_rate_bpm")
            values[field] = message.max_heart_rate_bpm if has else None
        elif field == "resting_heart_rate_bpm":
            has = message.HasField("resting_heart_rate_bpm")
            values[field] = message.resting_heart_rate_bpm if has else None
        else:
            values[field] = getattr(message, field)
    return values


def profile_from_proto(message: athlete_pb2.Athlete, violations: Violations) -> AthleteProfile:
    return AthleteProfile(**profile_values(message, PROFILE_FIELDS, violations))


def access_token_to_proto(token: AccessToken, secret: str = "") -> athlete_pb2.AccessToken:
    return athlete_pb2.AccessToken(
        name=names.access_token_name(token.athlete_id, token.id),
        display_name=token.display_name,
        expire_time=None if token.expire_time is None else datetime_to_timestamp(token.expire_time),
        token=secret,
        create_time=datetime_to_timestamp(token.create_time),
        last_use_time=(
            None if token.last_use_time is None else datetime_to_timestamp(token.last_use_time)
        ),
    )


def athlete_to_proto(athlete: Athlete) -> athlete_pb2.Athlete:
    p = athlete.profile
    message = athlete_pb2.Athlete(
        name=names.athlete_name(athlete.id),
        display_name=p.display_name,
        birth_date=date_to_proto(p.birth_date),
        sex=SEX_TO_PROTO[p.sex],
        time_zone=p.time_zone,
        weight_kg=p.weight_kg,
        max_heart_rate_bpm=p.max_heart_rate_bpm,
        resting_heart_rate_bpm=p.resting_heart_rate_bpm,
        strava_connection_state=STRAVA_STATE_TO_PROTO[athlete.strava_state],
        create_time=datetime_to_timestamp(athlete.create_time),
        update_time=datetime_to_timestamp(athlete.update_time),
        etag=athlete.etag,
    )
    return message

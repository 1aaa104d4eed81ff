"""stride.v1.Activity and samples <-> domain activities."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.type import latlng_pb2
from stride.v1 import activity_pb2, common_pb2

from domain import names
from domain.activities import (
    EARLIEST_START,
    EDITABLE_FIELDS,
    SAMPLE_CHANNELS,
    Activity,
    ActivityEdit,
    Measurements,
    Sample,
    Source,
    Visibility,
)
from domain.errors import Violations
from domain.sports import SPORT_TYPES
from server.convert.agegrade import age_grade_to_proto
from server.convert.common import (
    datetime_to_timestamp,
    duration_to_timedelta,
    timedelta_to_duration,
    timestamp_to_datetime,
)


def _strava_name(enum_name: str) -> str:
    return "".join(part.capitalize() for part in enum_name.removeprefix("SPORT_TYPE_").split("_"))


SPORT_FROM_PROTO: dict[int, str] = {
    number: _strava_name(name)
    for name, number in common_pb2.SportType.items()
    if number != common_pb2.SPORT_TYPE_UNSPECIFIED
}
SPORT_TO_PROTO: dict[str, int] = {value: key for key, value in SPORT_FROM_PROTO.items()}
assert set(SPORT_TO_PROTO) == SPORT_TYPES, "SportType enum and domain.sports disagree"

VISIBILITY_TO_PROTO = {
    Visibility.EVERYONE: activity_pb2.VISIBILITY_EVERYONE,
    Visibility.FOLLOWERS_ONLY: activity_pb2.VISIBILITY_FOLLOWERS_ONLY,
    Visibility.ONLY_ME: activity_pb2.VISIBILITY_ONLY_ME,
}
VISIBILITY_FROM_PROTO = {value: key for key, value in VISIBILITY_TO_PROTO.items()}

SOURCE_TO_PROTO = {
    Source.MANUAL: activity_pb2.ACTIVITY_SOURCE_MANUAL,
    Source.STRAVA: activity_pb2.ACTIVITY_SOURCE_STRAVA,
    Source.FILE: activity_pb2.ACTIVITY_SOURCE_FILE,
}

CHANNEL_FROM_PROTO = {
    activity_pb2.SampleChannel.Value(f"SAMPLE_CHANNEL_{channel.upper()}"): channel
    for channel in SAMPLE_CHANNELS
}

IMMUTABLE = (
    "start_time",
    "time_zone",
    "elapsed_time",
    "moving_time",
    "distance_meters",
    "total_elevation_gain_meters",
    "average_heart_rate_bpm",
    "max_heart_rate_bpm",
)
# Paths an update mask may name but that are never written. `etag` is sent back with an
# update as its precondition (AIP-154), not as a value.
OUTPUT_ONLY = (
    "name",
    "source",
    "external_id",
    "sample_count",
    "create_time",
    "update_time",
    "etag",
    "total_elevation_loss_meters",
    "average_cadence_rpm",
    "average_power_watts",
    "max_power_watts",
    "average_speed_meters_per_second",
    "max_speed_meters_per_second",
)


def sport_type_from_proto(value: int, field: str, violations: Violations) -> str:
    sport = SPORT_FROM_PROTO.get(value)
    if sport is None:
        violations.add(field, "is required and must be a known SportType")
        return ""
    return sport


def edit_values(
    message: activity_pb2.Activity, fields: list[str] | tuple[str, ...], violations: Violations
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in fields:
        path = f"activity.{field}"
        if field == "sport_type":
            values[field] = sport_type_from_proto(message.sport_type, path, violations)
        elif field == "visibility":
            if message.visibility == activity_pb2.VISIBILITY_UNSPECIFIED:
                values[field] = Visibility.EVERYONE
            elif message.visibility in VISIBILITY_FROM_PROTO:
                values[field] = VISIBILITY_FROM_PROTO[message.visibility]
            else:
                violations.add(path, "must be a known Visibility value")
        else:
            values[field] = getattr(message, field)
    return values


def new_activity_from_proto(
    message: activity_pb2.Activity, violations: Violations
) -> tuple[ActivityEdit, Measurements]:
    """Decode a new activity; undecodable fields are recorded and replaced by placeholders."""
    edit = edit_values(message, EDITABLE_FIELDS, violations)
    edit.setdefault("visibility", Visibility.EVERYONE)
    start = None
    if not message.HasField("start_time"):
        violations.add("activity.start_time", "is required")
    else:
        start = timestamp_to_datetime(message.start_time, "activity.start_time", violations)
    elapsed = None
    if not message.HasField("elapsed_time"):
        violations.add("activity.elapsed_time", "is required")
    else:
        elapsed = duration_to_timedelta(message.elapsed_time, "activity.elapsed_time", violations)
    moving = (
        duration_to_timedelta(message.moving_time, "activity.moving_time", violations)
        if message.HasField("moving_time")
        else None
    )
    measurements = Measurements(
        start_time=start or EARLIEST_START,
        elapsed=elapsed or dt.timedelta(0),
        time_zone=message.time_zone,
        moving=moving,
        distance_meters=message.distance_meters,
        elevation_gain_meters=message.total_elevation_gain_meters,
        average_heart_rate_bpm=(
            message.average_heart_rate_bpm if message.HasField("average_heart_rate_bpm") else None
        ),
        max_heart_rate_bpm=(
            message.max_heart_rate_bpm if message.HasField("max_heart_rate_bpm") else None
        ),
    )
    return ActivityEdit(**edit), measurements


def activity_to_proto(activity: Activity) -> activity_pb2.Activity:
    e, m = activity.edit, activity.measurements
    return activity_pb2.Activity(
        name=names.activity_name(activity.athlete_id, activity.id),
        title=e.title,
        description=e.description,
        sport_type=SPORT_TO_PROTO.get(e.sport_type, common_pb2.SPORT_TYPE_UNSPECIFIED),  # type: ignore[arg-type]
        start_time=datetime_to_timestamp(m.start_time),
        time_zone=m.time_zone,
        elapsed_time=timedelta_to_duration(m.elapsed),
        moving_time=None if m.moving is None else timedelta_to_duration(m.moving),
        distance_meters=m.distance_meters,
        total_elevation_gain_meters=m.elevation_gain_meters,
        average_heart_rate_bpm=m.average_heart_rate_bpm,
        max_heart_rate_bpm=m.max_heart_rate_bpm,
        visibility=VISIBILITY_TO_PROTO[e.visibility],
        source=SOURCE_TO_PROTO[activity.source],
        external_id=activity.external_id,
        sample_count=activity.sample_count,
        create_time=datetime_to_timestamp(activity.create_time),
        update_time=datetime_to_timestamp(activity.update_time),
        etag=activity.etag,
        source_job=(
            names.job_name(activity.athlete_id, activity.source_job_id)
            if activity.source_job_id
            else ""
        ),
        age_grade=None if activity.age_grade is None else age_grade_to_proto(activity.age_grade),
        total_elevation_loss_meters=m.elevation_loss_meters,
        average_cadence_rpm=m.average_cadence_rpm,
        average_power_watts=m.average_power_watts,
        max_power_watts=m.max_power_watts,
        average_speed_meters_per_second=m.average_speed_meters_per_second,
        max_speed_meters_per_second=m.max_speed_meters_per_second,
    )


def sample_to_proto(sample: Sample, channels: frozenset[str]) -> activity_pb2.ActivitySample:
    message = activity_pb2.ActivitySample(time=datetime_to_timestamp(sample.time))
    if "distance" in channels and sample.distance_meters is not None:
        message.distance_meters = sample.distance_meters
    if "lat_lng" in channels and sample.latitude is not None and sample.longitude is not None:
        message.lat_lng.CopyFrom(
            latlng_pb2.LatLng(latitude=sample.latitude, longitude=sample.longitude)
        )
    if "altitude" in channels and sample.altitude_meters is not None:
        message.altitude_meters = sample.altitude_meters
    if "heart_rate" in channels and sample.heart_rate_bpm is not None:
        message.heart_rate_bpm = sample.heart_rate_bpm
    if "cadence" in channels and sample.cadence_rpm is not None:
        message.cadence_rpm = sample.cadence_rpm
    if "power" in channels and sample.power_watts is not None:
        message.power_watts = sample.power_watts
    if "speed" in channels and sample.speed_meters_per_second is not None:
        message.speed_meters_per_second = sample.speed_meters_per_second
    return message

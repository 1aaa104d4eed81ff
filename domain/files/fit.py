"""FIT activity files (Garmin and other makers), decoded with fitdecode.

Why fitdecode, and how the awkward files are handled: docs/fit-decoders.md.

Decisions:
- A multisport file (several `session` messages) gives one activity per sport session;
  each record goes to the session whose time window holds it. Transition sessions (and
  records in no session's window) are dropped: they are not an activity of their own.
  A file with one session (or none) gives one activity with every record.
- A file that does not decode to its end (truncated, or damaged like the Strava Android
  app file, whose records stop parsing at byte 7471 of 78233) is FILE_CORRUPT, even though
  the records before the damage could be read: importing them would store a fraction of the
  activity as if it were all of it (473 of the Strava run's records: 0.93 of 11.27 km).
- CRCs are not checked: the structure is what matters, and writers that get the CRC wrong
  still write good records.
- Developer fields are ignored.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import fitdecode

from domain.activities import Sample
from domain.files.model import FileError, FileFormat, ParsedActivity

MAX_RECORDS = 500_000

_SEMICIRCLES_TO_DEGREES = 180.0 / 2**31

# FIT (sport, sub_sport) names, as fitdecode gives them, to Stride sport types. A sub_sport
# match wins over the sport's default.
_SUB_SPORTS: dict[tuple[str, str], str] = {
    ("running", "trail"): "TrailRun",
    ("running", "treadmill"): "VirtualRun",
    ("running", "virtual_activity"): "VirtualRun",
    ("running", "indoor_running"): "VirtualRun",
    ("cycling", "mountain"): "MountainBikeRide",
    ("cycling", "gravel_cycling"): "GravelRide",
    ("cycling", "indoor_cycling"): "VirtualRide",
    ("cycling", "virtual_activity"): "VirtualRide",
    ("cycling", "e_bike_fitness"): "EBikeRide",
    ("cycling", "e_bike_mountain"): "EMountainBikeRide",
    ("cycling", "hand_cycling"): "Handcycle",
    ("rowing", "indoor_rowing"): "VirtualRow",
    ("fitness_equipment", "indoor_rowing"): "VirtualRow",
    ("fitness_equipment", "elliptical"): "Elliptical",
    ("fitness_equipment", "stair_climbing"): "StairStepper",
    ("fitness_equipment", "treadmill"): "VirtualRun",
    ("fitness_equipment", "indoor_cycling"): "VirtualRide",
    ("training", "strength_training"): "WeightTraining",
    ("training", "yoga"): "Yoga",
    ("training", "pilates"): "Pilates",
    ("cross_country_skiing", "skate_skiing"): "NordicSki",
    ("alpine_skiing", "backcountry"): "BackcountrySki",
    ("hiking", "hiking"): "Hike",
}
_SPORTS: dict[str, str] = {
    "running": "Run",
    "cycling": "Ride",
    "e_biking": "EBikeRide",
    "swimming": "Swim",
    "walking": "Walk",
    "hiking": "Hike",
    "rowing": "Rowing",
    "paddling": "Canoeing",
    "kayaking": "Kayaking",
    "stand_up_paddleboarding": "StandUpPaddling",
    "surfing": "Surfing",
    "kitesurfing": "Kitesurf",
    "windsurfing": "Windsurf",
    "sailing": "Sail",
    "alpine_skiing": "AlpineSki",
    "cross_country_skiing": "NordicSki",
    "snowboarding": "Snowboard",
    "snowshoeing": "Snowshoe",
    "ice_skating": "IceSkate",
    "inline_skating": "InlineSkate",
    "rock_climbing": "RockClimbing",
    "golf": "Golf",
    "soccer": "Soccer",
    "tennis": "Tennis",
    "training": "Workout",
    "hiit": "HighIntensityIntervalTraining",
    "wheelchair_push_run": "Wheelchair",
    "wheelchair_push_walk": "Wheelchair",
    "floor_climbing": "StairStepper",
    "racket": "Racquetball",
    "pickleball": "Pickleball",
    "badminton": "Badminton",
    "squash": "Squash",
    "table_tennis": "TableTennis",
    "yoga": "Yoga",
}


def sport_type(sport: object, sub_sport: object) -> str | None:
    """The Stride sport type for a FIT sport and sub sport, None when unknown."""
    if not isinstance(sport, str):
        return None
    if isinstance(sub_sport, str) and (sport, sub_sport) in _SUB_SPORTS:
        return _SUB_SPORTS[(sport, sub_sport)]
    return _SPORTS.get(sport)


@dataclass
class _Session:
    start: dt.datetime | None
    end: dt.datetime | None
    sport: object
    sub_sport: object


def _values(message: Any) -> dict[str, Any]:
    """The message's named, non-developer field values that are set."""
    return {
        f.name: f.value
        for f in message.fields
        if f.value is not None and not (f.field_def is not None and f.field_def.is_dev)
    }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _sample(v: dict[str, Any], time: dt.datetime) -> Sample:
    lat = v.get("position_lat")
    lon = v.get("position_long")
    latitude = longitude = None
    if isinstance(lat, int) and isinstance(lon, int) and not (lat == 0 and lon == 0):
        latitude = lat * _SEMICIRCLES_TO_DEGREES
        longitude = lon * _SEMICIRCLES_TO_DEGREES
    altitude = _number(v.get("enhanced_altitude"))
    if altitude is None:
        altitude = _number(v.get("altitude"))
    speed = _number(v.get("enhanced_speed"))
    if speed is None:
        speed = _number(v.get("speed"))
    cadence = _number(v.get("cadence"))
    if cadence is not None:
        cadence += _number(v.get("fractional_cadence")) or 0.0
    hr = _number(v.get("heart_rate"))
    power = _number(v.get("power"))
    return Sample(
        time=time,
        distance_meters=_number(v.get("distance")),
        latitude=latitude,
        longitude=longitude,
        altitude_meters=altitude,
        heart_rate_bpm=None if hr is None else round(hr),
        cadence_rpm=None if cadence is None else round(cadence),
        power_watts=None if power is None else round(power),
        speed_meters_per_second=speed,
    )


def _utc(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _name(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value.replace("_", " ")
    return None


def _device(v: dict[str, Any]) -> str | None:
    maker = _name(v.get("manufacturer"))
    product = v.get("product_name") or v.get("garmin_product") or v.get("product")
    product_name = _name(product)
    if maker is None:
        return product_name
    maker = maker.title() if maker.islower() else maker
    if product_name is None:
        return maker
    if product_name.lower().startswith(maker.lower()):
        return product_name
    return f"{maker} {product_name}"


def _check_header(data: bytes) -> None:
    if len(data) < 12 or data[0] not in (12, 14) or data[8:12] != b".FIT":
        raise FileError("FILE_WRONG_TYPE", "not a FIT file: no FIT file header")


def parse_fit(data: bytes, *, max_records: int = MAX_RECORDS) -> list[ParsedActivity]:
    """The activities in a FIT file: one, or one per sport session of a multisport file.

    Raises FileError: FILE_WRONG_TYPE (no FIT header), FILE_CORRUPT (truncated or damaged:
    nothing of it is kept), FILE_TOO_LARGE (more than `max_records` records; decoding stops
    at the first one over).
    """
    _check_header(data)
    records: list[Sample] = []
    record_count = 0
    sessions: list[_Session] = []
    device: str | None = None
    file_sport: tuple[object, object] | None = None
    try:
        with fitdecode.FitReader(
            io.BytesIO(data),
            check_crc=fitdecode.CrcCheck.DISABLED,
            # Malformed definitions (the COROS file's field sizes that are not a multiple
            # of their type's size) decode those fields as bytes, without a warning.
            error_handling=fitdecode.ErrorHandling.IGNORE,
        ) as reader:
            for frame in reader:
                if not isinstance(frame, fitdecode.FitDataMessage):
                    continue
                name = frame.name
                if name == "record":
                    record_count += 1
                    if record_count > max_records:
                        raise FileError(
                            "FILE_TOO_LARGE",
                            f"FIT file has more than {max_records} records",
                        )
                    v = _values(frame)
                    time = _utc(v.get("timestamp"))
                    if time is not None:
                        records.append(_sample(v, time))
                elif name == "session":
                    v = _values(frame)
                    start = _utc(v.get("start_time"))
                    elapsed = _number(v.get("total_elapsed_time"))
                    end = _utc(v.get("timestamp"))
                    if start is not None and elapsed is not None:
                        end = start + dt.timedelta(seconds=elapsed)
                    sessions.append(_Session(start, end, v.get("sport"), v.get("sub_sport")))
                elif name == "sport" and file_sport is None:
                    v = _values(frame)
                    file_sport = (v.get("sport"), v.get("sub_sport"))
                elif name == "file_id" and device is None:
                    device = _device(_values(frame))
    except FileError:
        raise
    except fitdecode.FitHeaderError as exc:
        raise FileError("FILE_WRONG_TYPE", f"not a FIT file: {exc}") from exc
    except fitdecode.FitEOFError as exc:
        raise FileError(
            "FILE_CORRUPT", f"FIT file is truncated (ends in the middle of a message): {exc}"
        ) from exc
    except (fitdecode.FitError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise FileError("FILE_CORRUPT", f"FIT file is damaged: {exc}") from exc

    records.sort(key=lambda s: s.time)
    if len(sessions) <= 1:
        sport = (sessions[0].sport, sessions[0].sub_sport) if sessions else file_sport
        return [
            ParsedActivity(
                format=FileFormat.FIT,
                start_time=records[0].time if records else None,
                samples=records,
                sport_type=sport_type(*sport) if sport else None,
                device=device,
            )
        ]
    activities = []
    for session in sessions:
        if session.sport == "transition" or session.start is None or session.end is None:
            continue
        start, end = session.start, session.end
        samples = [s for s in records if start <= s.time <= end]
        activities.append(
            ParsedActivity(
                format=FileFormat.FIT,
                start_time=samples[0].time if samples else start,
                samples=samples,
                sport_type=sport_type(session.sport, session.sub_sport),
                device=device,
            )
        )
    return activities

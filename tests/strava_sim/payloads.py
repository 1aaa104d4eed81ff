"""JSON bodies shaped field for field like Strava's (see the recorded responses in
``shared/fixtures/real/strava_api/``): SummaryActivity, DetailedActivity, laps, zones, streams.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from tests.strava_sim.geo import iso_z, strava_timezone
from tests.strava_sim.streams import (
    STREAM_ORDER,
    Streams,
    Window,
    best_efforts,
    cut_by_distance,
    pace_zone,
    window,
)
from tests.strava_sim.world import (
    FOOT_SPORTS,
    LEGACY_TYPE,
    RIDE_SPORTS,
    RUN_SPORTS,
    Activity,
    Athlete,
    polylines,
)

Json = dict[str, Any]


def _derived_id(activity: Activity, what: str, index: int) -> int:
    digest = hashlib.sha256(f"{activity.id}:{what}:{index}".encode()).digest()
    return 1_000_000_000 + int.from_bytes(digest[:6], "big") % 30_000_000_000


def _local(activity: Activity, when: dt.datetime) -> dt.datetime:
    return when.astimezone(ZoneInfo(activity.zone))


def _ref(activity: Activity) -> Json:
    return {"id": activity.id, "visibility": activity.visibility, "resource_state": 1}


def summary(activity: Activity) -> Json:
    """SummaryActivity (resource_state 2), key order as the 2025 recording."""
    label, offset = strava_timezone(activity.zone, activity.start)
    summary_polyline, _ = polylines(activity)
    start = [activity.waypoints[0][0], activity.waypoints[0][1]] if activity.has_gps else []
    end = [activity.waypoints[-1][0], activity.waypoints[-1][1]] if activity.has_gps else []
    body: Json = {
        "resource_state": 2,
        "athlete": {"id": activity.athlete_id, "resource_state": 1},
        "name": activity.name,
        "distance": activity.distance,
        "moving_time": activity.moving_time,
        "elapsed_time": activity.elapsed_time,
        "total_elevation_gain": activity.total_elevation_gain,
        "type": LEGACY_TYPE.get(activity.sport_type, activity.sport_type),
        "sport_type": activity.sport_type,
        "workout_type": activity.workout_type,
        "id": activity.id,
        "start_date": iso_z(activity.start),
        "start_date_local": iso_z(_local(activity, activity.start)),
        "timezone": label,
        "utc_offset": offset,
        "location_city": None,
        "location_state": None,
        "location_country": None,
        "achievement_count": activity.achievement_count,
        "kudos_count": activity.kudos_count,
        "comment_count": activity.comment_count,
        "athlete_count": activity.athlete_count,
        "photo_count": 0,
        "map": {"id": f"a{activity.id}", "summary_polyline": summary_polyline, "resource_state": 2},
        "trainer": activity.trainer,
        "commute": activity.commute,
        "manual": activity.manual,
        "private": activity.private,
        "visibility": activity.visibility,
        "flagged": False,
        "gear_id": activity.gear_id,
        "start_latlng": start,
        "end_latlng": end,
        "average_speed": activity.average_speed,
        "max_speed": activity.max_speed,
    }
    if activity.average_cadence is not None:
        body["average_cadence"] = activity.average_cadence
    if activity.average_watts is not None:
        body["average_watts"] = activity.average_watts
        body["kilojoules"] = round(activity.average_watts * activity.moving_time / 1000, 1)
        body["device_watts"] = True
        body["max_watts"] = activity.max_watts
        body["weighted_average_watts"] = round(activity.average_watts * 1.06)
    if activity.average_temp is not None:
        body["average_temp"] = activity.average_temp
    body["has_heartrate"] = activity.has_heartrate
    if activity.has_heartrate:
        body["average_heartrate"] = activity.average_heartrate
        body["max_heartrate"] = activity.max_heartrate
    body["heartrate_opt_out"] = False
    body["display_hide_heartrate_option"] = activity.has_heartrate
    if activity.has_altitude:
        body["elev_high"] = activity.elev_high
        body["elev_low"] = activity.elev_low
    body["upload_id"] = activity.upload_id
    if activity.upload_id is not None:
        body["upload_id_str"] = str(activity.upload_id)
    body["external_id"] = activity.external_id
    body["from_accepted_tag"] = False
    body["pr_count"] = activity.pr_count
    body["total_photo_count"] = activity.photo_count
    body["has_kudoed"] = False
    if activity.suffer_score is not None:
        body["suffer_score"] = activity.suffer_score
    return body


def _speed(part: Window) -> float:
    return round(part.distance / part.moving_time, 2) if part.moving_time else 0.0


def _timing(activity: Activity, streams: Streams, part: Window) -> Json:
    """The times, dates and distance every lap, split, effort carries."""
    return {
        "elapsed_time": part.elapsed_time,
        "moving_time": part.moving_time,
        "start_date": iso_z(activity.start + dt.timedelta(seconds=streams.time[part.start])),
        "start_date_local": iso_z(
            _local(activity, activity.start + dt.timedelta(seconds=streams.time[part.start]))
        ),
        "distance": part.distance,
    }


def laps(activity: Activity, athlete: Athlete, streams: Streams | None) -> list[Json]:
    """Auto laps: every kilometre or mile (the athlete's units) on foot, one lap otherwise."""
    if streams is None:
        return []
    if activity.sport_type in FOOT_SPORTS:
        every = 1609.344 if athlete.measurement == "feet" else 1000.0
        parts = cut_by_distance(streams, every)
    else:
        parts = [window(streams, 0, len(streams) - 1)]
    out = []
    for index, part in enumerate(parts, start=1):
        base = _timing(activity, streams, part)
        speed = _speed(part)
        lap: Json = {
            "id": _derived_id(activity, "lap", index),
            "resource_state": 2,
            "name": f"Lap {index}",
            "activity": _ref(activity),
            "athlete": {"id": activity.athlete_id, "resource_state": 1},
            **base,
            "average_speed": speed,
            "max_speed": round(part.max_speed, 1),
            "lap_index": index,
            "split": index,
            "start_index": part.start,
            "end_index": part.end,
            "total_elevation_gain": part.elevation_gain,
            "device_watts": activity.average_watts is not None,
        }
        if part.average_cadence is not None:
            lap["average_cadence"] = part.average_cadence
        if part.average_watts is not None:
            lap["average_watts"] = part.average_watts
        if part.average_heartrate is not None:
            lap["average_heartrate"] = part.average_heartrate
            lap["max_heartrate"] = part.max_heartrate
        if activity.sport_type in RUN_SPORTS:
            lap["pace_zone"] = pace_zone(activity, speed)
        out.append(lap)
    return out


def _splits(activity: Activity, streams: Streams, every: float) -> list[Json]:
    out = []
    for index, part in enumerate(cut_by_distance(streams, every), start=1):
        speed = _speed(part)
        grade = part.elevation_difference / part.distance if part.distance else 0.0
        split: Json = {
            "distance": part.distance,
            "elapsed_time": part.elapsed_time,
            "elevation_difference": part.elevation_difference,
            "moving_time": part.moving_time,
            "split": index,
            "average_speed": speed,
            "average_grade_adjusted_speed": round(speed * (1 + 3.3 * grade), 2),
        }
        if part.average_heartrate is not None:
            split["average_heartrate"] = part.average_heartrate
        split["pace_zone"] = pace_zone(activity, speed)
        out.append(split)
    return out


def _best_efforts(activity: Activity, streams: Streams) -> list[Json]:
    out = []
    for index, (name, length, start, end) in enumerate(best_efforts(streams)):
        part = window(streams, start, end)
        base = _timing(activity, streams, part)
        rank = (activity.id // 7 + index) % 9
        pr_rank = rank if rank in (1, 2, 3) else None
        out.append(
            {
                "id": _derived_id(activity, "best", index),
                "resource_state": 2,
                "name": name,
                "activity": _ref(activity),
                "athlete": {"id": activity.athlete_id, "resource_state": 1},
                **base,
                "distance": length,
                "pr_rank": pr_rank,
                "achievements": (
                    [{"type_id": 3, "type": "pr", "rank": pr_rank}] if pr_rank is not None else []
                ),
                "start_index": start,
                "end_index": end,
            }
        )
    return out


SEGMENT_WORDS = ("Climb", "Sprint", "Loop", "Bridge", "Côte", "Hill", "Straight")


def _segment_efforts(activity: Activity, streams: Streams) -> list[Json]:
    if not activity.has_gps or streams.latlng is None or streams.altitude is None:
        return []
    count = activity.id % 3
    total = streams.distance[-1]
    out = []
    for k in range(count):
        length = min(total / 3, 600 + (activity.id // 11 + k * 977) % 2400)
        begin = total * (0.15 + 0.3 * k)
        start = min(range(len(streams)), key=lambda i: abs(streams.distance[i] - begin))
        end = min(
            range(start, len(streams)),
            key=lambda i: abs(streams.distance[i] - (begin + length)),
        )
        if end <= start:
            continue
        part = window(streams, start, end)
        altitudes = streams.altitude[start : end + 1]
        grades = streams.grade_smooth[start : end + 1] if streams.grade_smooth else [0.0]
        kind = "Ride" if activity.sport_type in RIDE_SPORTS else "Run"
        word = SEGMENT_WORDS[(activity.id + k) % len(SEGMENT_WORDS)]
        base = _timing(activity, streams, part)
        effort: Json = {
            "id": _derived_id(activity, "effort", k),
            "resource_state": 2,
            "name": f"{activity.city.name} {word} #{k + 1}",
            "activity": _ref(activity),
            "athlete": {"id": activity.athlete_id, "resource_state": 1},
            **base,
            "start_index": start,
            "end_index": end,
            "device_watts": activity.average_watts is not None,
        }
        if part.average_watts is not None:
            effort["average_watts"] = part.average_watts
        if part.average_cadence is not None:
            effort["average_cadence"] = part.average_cadence
        if part.average_heartrate is not None:
            effort["average_heartrate"] = part.average_heartrate
            effort["max_heartrate"] = part.max_heartrate
        effort["segment"] = {
            "id": _derived_id(activity, "segment", k) % 40_000_000,
            "resource_state": 2,
            "name": effort["name"],
            "activity_type": kind,
            "distance": part.distance,
            "average_grade": round(part.elevation_difference / part.distance * 100, 1)
            if part.distance
            else 0.0,
            "maximum_grade": max(grades),
            "elevation_high": max(altitudes),
            "elevation_low": min(altitudes),
            "start_latlng": streams.latlng[start],
            "end_latlng": streams.latlng[end],
            "elevation_profile": None,
            "elevation_profiles": None,
            "climb_category": 1 if part.elevation_difference > 80 else 0,
            "city": activity.city.name,
            "state": activity.city.state,
            "country": activity.city.country,
            "private": False,
            "hazardous": False,
            "starred": False,
        }
        effort["pr_rank"] = None
        effort["achievements"] = []
        effort["visibility"] = activity.visibility
        effort["kom_rank"] = None
        effort["hidden"] = False
        out.append(effort)
    return out


def detailed(activity: Activity, athlete: Athlete, streams: Streams | None) -> Json:
    """DetailedActivity (resource_state 3)."""
    body = summary(activity)
    body["resource_state"] = 3
    _, polyline = polylines(activity)
    body["map"] = {
        "id": f"a{activity.id}",
        "polyline": polyline,
        "resource_state": 3,
        "summary_polyline": body["map"]["summary_polyline"],
    }
    body["description"] = activity.description
    body["calories"] = activity.calories
    body["perceived_exertion"] = None
    body["prefer_perceived_exertion"] = None
    body["segment_efforts"] = _segment_efforts(activity, streams) if streams else []
    if streams is not None and activity.sport_type in FOOT_SPORTS:
        body["splits_metric"] = _splits(activity, streams, 1000.0)
        body["splits_standard"] = _splits(activity, streams, 1609.344)
    body["laps"] = laps(activity, athlete, streams)
    if streams is not None and activity.sport_type in RUN_SPORTS:
        body["best_efforts"] = _best_efforts(activity, streams)
    gear = next((g for g in athlete.shoes + athlete.bikes if g.id == activity.gear_id), None)
    if gear is not None:
        body["gear"] = gear.summary(athlete.measurement)
    if activity.photo_count:
        digest = hashlib.sha256(f"photo:{activity.id}".encode()).hexdigest()
        body["photos"] = {
            "primary": {
                "unique_id": "-".join(
                    (digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32])
                ),
                "urls": {
                    "600": f"https://dgtzuqphqg23d.cloudfront.net/{digest[:40]}-768x576.jpg",
                    "100": f"https://dgtzuqphqg23d.cloudfront.net/{digest[:40]}-128x96.jpg",
                },
                "source": 1,
                "media_type": 1,
            },
            "use_primary_photo": True,
            "count": activity.photo_count,
        }
    else:
        body["photos"] = {"primary": None, "count": 0}
    body["stats_visibility"] = [
        {"type": kind, "visibility": "everyone"}
        for kind in ("heart_rate", "pace", "power", "speed", "calories")
    ]
    body["hide_from_home"] = False
    if activity.device_name is not None:
        body["device_name"] = activity.device_name
    body["embed_token"] = hashlib.sha1(f"embed:{activity.id}".encode()).hexdigest()
    if activity.sport_type in RUN_SPORTS and not activity.manual:
        speed = activity.average_speed
        body["similar_activities"] = {
            "effort_count": 1 + activity.id % 12,
            "average_speed": speed * 0.97,
            "min_average_speed": speed * 0.85,
            "mid_average_speed": speed * 0.96,
            "max_average_speed": speed * 1.08,
            "pr_rank": None,
            "frequency_milestone": None,
            "trend": {
                "speeds": [speed * 0.93, speed * 0.97, speed],
                "current_activity_index": 2,
                "min_speed": speed * 0.85,
                "mid_speed": speed * 0.96,
                "max_speed": speed * 1.08,
                "direction": 1,
            },
            "resource_state": 2,
        }
    zones = []
    if activity.has_heartrate:
        zones.append("heartrate")
    if activity.sport_type in RUN_SPORTS and not activity.manual:
        zones.append("pace")
    if activity.average_watts is not None:
        zones.append("power")
    body["available_zones"] = zones
    return body


def zones(activity: Activity, athlete: Athlete, streams: Streams | None) -> list[Json]:
    """``GET /activities/{id}/zones``: time in heart-rate and pace (or power) buckets."""
    if streams is None:
        return []
    out: list[Json] = []
    steps = [0] + [b - a for a, b in zip(streams.time, streams.time[1:], strict=False)]
    if streams.heartrate is not None:
        edges = [round(athlete.max_hr * f) for f in (0.6, 0.75, 0.83, 0.91)]
        seconds = [0] * 5
        for value, dt_s in zip(streams.heartrate, steps, strict=True):
            seconds[sum(value > edge for edge in edges)] += dt_s
        lows = [0] + [edge + 1 for edge in edges]
        highs = [*edges, -1]
        out.append(
            {
                "score": activity.suffer_score if activity.suffer_score is not None else 0.0,
                "distribution_buckets": [
                    {"min": lo, "max": hi, "time": float(t)}
                    for lo, hi, t in zip(lows, highs, seconds, strict=True)
                ],
                "type": "heartrate",
                "resource_state": 3,
                "sensor_based": True,
                "points": len(streams.heartrate),
                "custom_zones": False,
            }
        )
    if activity.sport_type in RUN_SPORTS:
        avg = activity.average_speed
        edges_f = [round(avg * f, 3) for f in (0.85, 0.95, 1.03, 1.1, 1.2)]
        seconds = [0] * 6
        for speed, is_moving, dt_s in zip(
            streams.velocity_smooth, streams.moving, steps, strict=True
        ):
            if is_moving:
                seconds[sum(speed > edge for edge in edges_f)] += dt_s
        pace_lows: list[float] = [0, *edges_f]
        pace_highs: list[float] = [*edges_f, -1]
        out.append(
            {
                "score": 1 + activity.id % 9,
                "distribution_buckets": [
                    {"max": hi, "min": lo, "time": t}
                    for lo, hi, t in zip(pace_lows, pace_highs, seconds, strict=True)
                ],
                "type": "pace",
                "resource_state": 3,
                "sensor_based": True,
            }
        )
    return out


RESOLUTIONS = {"low": 100, "medium": 1000, "high": 10000}


def stream_set(
    streams: Streams,
    keys: Sequence[str],
    key_by_type: bool,
    series_type: str,
    resolution: str | None,
) -> Json | list[Json]:
    """The streams endpoint's body.

    Strava always adds the series stream (``distance`` unless ``series_type=time``) to the
    requested keys, silently skips types the activity did not record, and, with
    ``resolution``, downsamples to at most 100/1,000/10,000 points.
    """
    available = streams.available()
    wanted = set(keys) | {series_type if series_type in ("time", "distance") else "distance"}
    size = len(streams)
    indices: list[int] | None = None
    label = "high"
    if resolution in RESOLUTIONS:
        label = resolution
        limit = RESOLUTIONS[resolution]
        if size > limit:
            indices = sorted({round(k * (size - 1) / (limit - 1)) for k in range(limit)})
    out: list[Json] = []
    for name in STREAM_ORDER:
        if name not in wanted or name not in available:
            continue
        data = available[name]
        values = [data[i] for i in indices] if indices is not None else list(data)
        out.append(
            {
                "type": name,
                "data": values,
                "series_type": series_type if series_type in ("time", "distance") else "distance",
                "original_size": size,
                "resolution": label,
            }
        )
    if key_by_type:
        return {item.pop("type"): item for item in out}
    return out

"""Activities and their samples, with the rules a manual entry obeys."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from domain import etags
from domain.agegrade import GradedPerformance, grade_for
from domain.athletes import AthleteProfile
from domain.errors import Violations
from domain.sports import RUNNING_SPORTS, SPORT_TYPES
from domain.validation import check_number, check_text, check_time_zone

EARLIEST_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_ELAPSED = dt.timedelta(days=30)


class Source(StrEnum):
    MANUAL = "manual"
    STRAVA = "strava"
    FILE = "file"


class Visibility(StrEnum):
    EVERYONE = "everyone"
    FOLLOWERS_ONLY = "followers_only"
    ONLY_ME = "only_me"


@dataclass(frozen=True)
class ActivityEdit:
    """The fields that stay editable after an activity exists."""

    title: str
    sport_type: str
    description: str = ""
    visibility: Visibility = Visibility.EVERYONE


EDITABLE_FIELDS: tuple[str, ...] = tuple(ActivityEdit.__dataclass_fields__)


@dataclass(frozen=True)
class Measurements:
    """What was recorded; fixed once the activity exists."""

    start_time: dt.datetime
    elapsed: dt.timedelta
    time_zone: str = ""
    moving: dt.timedelta | None = None
    distance_meters: float = 0.0
    elevation_gain_meters: float = 0.0
    average_heart_rate_bpm: float | None = None
    max_heart_rate_bpm: float | None = None
    # Given by the source, else derived from the samples (domain.metrics.fill_measurements);
    # None when neither has them (manual entries never do).
    elevation_loss_meters: float | None = None
    average_cadence_rpm: float | None = None
    average_power_watts: float | None = None
    max_power_watts: float | None = None
    average_speed_meters_per_second: float | None = None
    max_speed_meters_per_second: float | None = None


@dataclass(frozen=True)
class Activity:
    id: str
    athlete_id: str
    edit: ActivityEdit
    measurements: Measurements
    source: Source
    external_id: str
    sample_count: int
    create_time: dt.datetime
    update_time: dt.datetime
    # Incremented by every update; the etag is derived from it (domain.etags).
    revision: int = 1
    # The job (sync, import) that created it; None for manual entries.
    source_job_id: str | None = None
    # Derived when read (with_age_grade): runs only, None without a grade.
    age_grade: GradedPerformance | None = None

    @property
    def etag(self) -> str:
        return etags.etag(self.revision)


def with_age_grade(activity: Activity, profile: AthleteProfile) -> Activity:
    """The activity with its road age grade for the athlete's profile (runs only): its
    distance and elapsed time, on the day it started in its time zone."""
    if activity.edit.sport_type not in RUNNING_SPORTS:
        return activity
    m = activity.measurements
    day = m.start_time.astimezone(ZoneInfo(m.time_zone or profile.time_zone or "UTC")).date()
    graded = grade_for(profile, day, m.distance_meters, m.elapsed.total_seconds())
    return dataclasses.replace(activity, age_grade=graded)


@dataclass(frozen=True)
class ActivityFilter:
    start_from: dt.datetime | None = None
    start_to: dt.datetime | None = None
    sport_types: tuple[str, ...] = ()
    descending: bool = False
    # Only what this job (of the same athlete) created.
    source_job_id: str | None = None


@dataclass(frozen=True)
class Sample:
    time: dt.datetime
    distance_meters: float | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude_meters: float | None = None
    heart_rate_bpm: int | None = None
    cadence_rpm: int | None = None
    power_watts: int | None = None
    speed_meters_per_second: float | None = None


SAMPLE_CHANNELS: tuple[str, ...] = (
    "distance",
    "lat_lng",
    "altitude",
    "heart_rate",
    "cadence",
    "power",
    "speed",
)


@dataclass(frozen=True)
class SampleQuery:
    channels: frozenset[str] = field(default_factory=lambda: frozenset(SAMPLE_CHANNELS))
    chunk_size: int = 1000


def validate_edit(edit: ActivityEdit, violations: Violations, prefix: str) -> None:
    check_text(violations, f"{prefix}.title", edit.title, max_length=200, required=True)
    check_text(
        violations, f"{prefix}.description", edit.description, max_length=10_000, required=False
    )
    if edit.sport_type not in SPORT_TYPES:
        violations.add(f"{prefix}.sport_type", "is required and must be a known sport type")


def validate_measurements(
    m: Measurements, violations: Violations, prefix: str, now: dt.datetime
) -> None:
    if not EARLIEST_START <= m.start_time <= now + dt.timedelta(days=1):
        violations.add(f"{prefix}.start_time", "must be between 1970-01-01 and now")
    check_time_zone(violations, f"{prefix}.time_zone", m.time_zone, required=False)
    elapsed_valid = dt.timedelta(0) < m.elapsed <= MAX_ELAPSED
    if not elapsed_valid:
        violations.add(f"{prefix}.elapsed_time", "must be positive and at most 30 days")
    elif m.moving is not None and not dt.timedelta(0) <= m.moving <= m.elapsed:
        violations.add(f"{prefix}.moving_time", "must be between 0 and elapsed_time")
    check_number(
        violations,
        f"{prefix}.distance_meters",
        m.distance_meters,
        minimum=0,
        maximum=10_000_000,
        unit="m",
    )
    check_number(
        violations,
        f"{prefix}.total_elevation_gain_meters",
        m.elevation_gain_meters,
        minimum=0,
        maximum=100_000,
        unit="m",
    )
    for name, value in (
        ("average_heart_rate_bpm", m.average_heart_rate_bpm),
        ("max_heart_rate_bpm", m.max_heart_rate_bpm),
    ):
        check_number(violations, f"{prefix}.{name}", value, minimum=20, maximum=260)

"""Athletes: their profile fields and the rules those fields obey."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from domain import etags
from domain.connections import ConnectionState
from domain.errors import Violations
from domain.validation import check_number, check_text, check_time_zone


class Sex(StrEnum):
    UNSPECIFIED = ""
    FEMALE = "F"
    MALE = "M"


@dataclass(frozen=True)
class AthleteProfile:
    """The fields a caller may set."""

    display_name: str
    time_zone: str
    birth_date: dt.date | None = None
    sex: Sex = Sex.UNSPECIFIED
    weight_kg: float | None = None
    max_heart_rate_bpm: int | None = None
    resting_heart_rate_bpm: int | None = None


PROFILE_FIELDS: tuple[str, ...] = tuple(AthleteProfile.__dataclass_fields__)


@dataclass(frozen=True)
class Athlete:
    id: str
    profile: AthleteProfile
    strava_state: ConnectionState
    create_time: dt.datetime
    update_time: dt.datetime
    # Incremented by every update; the etag is derived from it (domain.etags).
    revision: int = 1

    @property
    def etag(self) -> str:
        return etags.etag(self.revision)


def validate_profile(
    profile: AthleteProfile, violations: Violations, prefix: str, today: dt.date
) -> None:
    """Check every field of a profile, reporting paths as `{prefix}.{field}`."""
    check_text(
        violations, f"{prefix}.display_name", profile.display_name, max_length=200, required=True
    )
    check_time_zone(violations, f"{prefix}.time_zone", profile.time_zone, required=True)
    if profile.birth_date is not None and not dt.date(1900, 1, 1) <= profile.birth_date <= today:
        violations.add(f"{prefix}.birth_date", "must be a real date between 1900-01-01 and today")
    check_number(violations, f"{prefix}.weight_kg", profile.weight_kg, minimum=1, maximum=500)
    check_number(
        violations,
        f"{prefix}.max_heart_rate_bpm",
        profile.max_heart_rate_bpm,
        minimum=60,
        maximum=260,
    )
    check_number(
        violations,
        f"{prefix}.resting_heart_rate_bpm",
        profile.resting_heart_rate_bpm,
        minimum=20,
        maximum=150,
    )
    if (
        profile.max_heart_rate_bpm is not None
        and profile.resting_heart_rate_bpm is not None
        and profile.resting_heart_rate_bpm >= profile.max_heart_rate_bpm
    ):
        violations.add(f"{prefix}.resting_heart_rate_bpm", "must be below max_heart_rate_bpm")


# Profile fields that derived values depend on (training load: heart rates, age, sex; the
# year a personal record counts for: the time zone).
DERIVED_INPUTS = (
    "birth_date",
    "sex",
    "max_heart_rate_bpm",
    "resting_heart_rate_bpm",
    "time_zone",
)


def derived_inputs_changed(before: AthleteProfile, after: AthleteProfile) -> bool:
    return any(getattr(before, f) != getattr(after, f) for f in DERIVED_INPUTS)

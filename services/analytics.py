"""AnalyticsService's use-cases. Age grading for now: a stored activity, a stored athlete's
performance, or an explicit age and sex (the grading itself is domain/agegrade.py)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from domain import agegrade, names
from domain.agegrade import AgeGrade, NoGradeReason
from domain.athletes import Athlete, Sex
from domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.athletes import RESOURCE as ATHLETE_RESOURCE
from storage.database import Database
from storage.repositories.activities import ActivityRepository
from storage.repositories.athletes import AthleteRepository

ACTIVITY_RESOURCE = "stride.dev/Activity"
# Road standards: only runs are graded.
GRADED_SPORTS = frozenset({"Run", "TrailRun", "VirtualRun"})
# The contract's reasons for each NoGradeReason (sync with analytics.proto).
NOT_GRADED = {
    NoGradeReason.SEX_UNKNOWN: "SEX_NOT_GRADED",
    NoGradeReason.AGE_OUT_OF_RANGE: "AGE_NOT_GRADED",
    NoGradeReason.DISTANCE_OUT_OF_RANGE: "DISTANCE_NOT_GRADED",
}


@dataclass(frozen=True)
class GradedPerformance:
    age: int
    sex: Sex
    distance_meters: float
    time_seconds: float
    grade: AgeGrade
    open_standard_seconds: float


@dataclass(frozen=True)
class Performance:
    """What a request says; `fields` name where each value came from, for violations."""

    distance_meters: float
    time_seconds: float
    distance_field: str
    time_field: str


class AnalyticsService:
    def __init__(self, db: Database, today: Callable[[str], dt.date] | None = None) -> None:
        self.db = db
        self.today = today or _today_in

    def grade_explicit(
        self, age: int, sex: Sex, performance: Performance, prefix: str
    ) -> GradedPerformance:
        """Every value is in the request: no grade is INVALID_ARGUMENT on its field."""
        _check_time(performance)
        fields = {
            NoGradeReason.SEX_UNKNOWN: f"{prefix}.sex",
            NoGradeReason.AGE_OUT_OF_RANGE: f"{prefix}.age",
            NoGradeReason.DISTANCE_OUT_OF_RANGE: performance.distance_field,
        }
        return _grade(age, sex, performance, lambda reason: _invalid(fields[reason], reason))

    def grade_for_athlete(
        self, athlete_id: str, performance: Performance, day: dt.date | None
    ) -> GradedPerformance:
        """Age and sex from the stored profile (FAILED_PRECONDITION when they give no
        grade); the distance from the request (INVALID_ARGUMENT)."""
        _check_time(performance)
        athlete = self._athlete(athlete_id)
        on = day or self.today(athlete.profile.time_zone)
        age = _stored_age(athlete, on)

        def refuse(reason: NoGradeReason) -> Exception:
            if reason == NoGradeReason.DISTANCE_OUT_OF_RANGE:
                return _invalid(performance.distance_field, reason)
            return _precondition(reason)

        return _grade(age, athlete.profile.sex, performance, refuse)

    def grade_activity(self, athlete_id: str, activity_id: str) -> GradedPerformance:
        """Everything from stored data: no grade is FAILED_PRECONDITION."""
        with self.db.read_only() as session:
            activity = ActivityRepository(session).get(athlete_id, activity_id)
        if activity is None:
            raise NotFound(ACTIVITY_RESOURCE, names.activity_name(athlete_id, activity_id))
        if activity.edit.sport_type not in GRADED_SPORTS:
            raise FailedPrecondition(
                f"{activity.edit.sport_type} activities are not graded (road running only)",
                reason="SPORT_NOT_GRADED",
            )
        athlete = self._athlete(athlete_id)
        m = activity.measurements
        zone = m.time_zone or athlete.profile.time_zone
        age = _stored_age(athlete, m.start_time.astimezone(ZoneInfo(zone)).date())
        performance = Performance(m.distance_meters, m.elapsed.total_seconds(), "", "")
        if not performance.time_seconds > 0:
            raise FailedPrecondition("the activity has no elapsed time", reason="TIME_NOT_GRADED")
        return _grade(age, athlete.profile.sex, performance, _precondition)

    def _athlete(self, athlete_id: str) -> Athlete:
        with self.db.read_only() as session:
            athlete = AthleteRepository(session).get(athlete_id)
        if athlete is None:
            raise NotFound(ATHLETE_RESOURCE, names.athlete_name(athlete_id))
        return athlete


def _grade(
    age: int,
    sex: Sex,
    performance: Performance,
    refuse: Callable[[NoGradeReason], Exception],
) -> GradedPerformance:
    distance, seconds = performance.distance_meters, performance.time_seconds
    reason = agegrade.why_no_grade(sex, age, distance, seconds)
    grade = agegrade.age_grade(sex, age, distance, seconds)
    standard = agegrade.open_standard_seconds(sex, distance)
    if reason is not None or grade is None or standard is None:
        raise refuse(reason or NoGradeReason.DISTANCE_OUT_OF_RANGE)
    return GradedPerformance(age, sex, distance, seconds, grade, standard)


def _check_time(performance: Performance) -> None:
    if not (math.isfinite(performance.time_seconds) and performance.time_seconds > 0):
        raise InvalidArgument([FieldViolation(performance.time_field, "must be positive")])
    if not math.isfinite(performance.distance_meters) or performance.distance_meters <= 0:
        raise InvalidArgument(
            [FieldViolation(performance.distance_field, "must be a positive number of metres")]
        )


def _stored_age(athlete: Athlete, day: dt.date) -> int:
    birth = athlete.profile.birth_date
    if birth is None:
        raise FailedPrecondition(
            "the athlete has no birth date: set it to be graded", reason="BIRTH_DATE_MISSING"
        )
    if day < birth:
        raise FailedPrecondition("the performance is before the athlete's birth",
                                 reason="AGE_NOT_GRADED")  # fmt: skip
    return agegrade.age_on(birth, day)


def _describe(reason: NoGradeReason) -> str:
    return {
        NoGradeReason.SEX_UNKNOWN: "only male and female performances are graded",
        NoGradeReason.AGE_OUT_OF_RANGE: "ages 5 to 100 are graded",
        NoGradeReason.DISTANCE_OUT_OF_RANGE: "distances from the mile to 200 km are graded",
        NoGradeReason.TIME_NOT_POSITIVE: "the time must be positive",
    }[reason]


def _invalid(field: str, reason: NoGradeReason) -> InvalidArgument:
    return InvalidArgument(
        [FieldViolation(field, _describe(reason))], reason=NOT_GRADED.get(reason)
    )


def _precondition(reason: NoGradeReason) -> FailedPrecondition:
    return FailedPrecondition(
        f"no age grade: {_describe(reason)}", reason=NOT_GRADED.get(reason, "NOT_GRADED")
    )


def _today_in(time_zone: str) -> dt.date:
    return dt.datetime.now(ZoneInfo(time_zone or "UTC")).date()

"""AnalyticsService's use-cases: age grading (a stored activity, a stored athlete's
performance, or an explicit age and sex; the grading itself is domain/agegrade.py), the
training summary and the fitness trend (sums in the database, storage/repositories/training.py;
the trend's averages in domain/training_load.py)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from domain import agegrade, names
from domain.agegrade import GradedPerformance, NoGradeReason
from domain.athletes import Athlete, Sex
from domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from domain.periods import (
    DEFAULT_PERIODS,
    DEFAULT_TREND_DAYS,
    MAX_RANGE_DAYS,
    Period,
    local_midnight,
    period_end,
    period_start,
    period_starts,
    periods_before,
)
from domain.sports import RUNNING_SPORTS
from domain.training_load import FitnessPoint, fitness_series
from services.athletes import require_athlete
from storage.database import Database
from storage.repositories.activities import ActivityRepository
from storage.repositories.training import BucketTotals, TrainingRepository

ACTIVITY_RESOURCE = "stride.dev/Activity"
# The contract's reasons for each NoGradeReason (sync with analytics.proto).
NOT_GRADED = {
    NoGradeReason.SEX_UNKNOWN: "SEX_NOT_GRADED",
    NoGradeReason.AGE_OUT_OF_RANGE: "AGE_NOT_GRADED",
    NoGradeReason.DISTANCE_OUT_OF_RANGE: "DISTANCE_NOT_GRADED",
}


@dataclass(frozen=True)
class Performance:
    """What a request says; `fields` name where each value came from, for violations."""

    distance_meters: float
    time_seconds: float
    distance_field: str
    time_field: str


# The fitness trend reads this many days of history before its start: what is older weighs
# at most (41/42)^3660 < 1e-38 of its load in the first point, below a double's precision.
TREND_HISTORY_DAYS = 3660


@dataclass(frozen=True)
class Totals:
    activity_count: int = 0
    distance_meters: float = 0.0
    moving_seconds: float = 0.0
    elevation_gain_meters: float = 0.0
    training_load: float = 0.0
    estimated_load_count: int = 0

    def plus(self, other: Totals) -> Totals:
        return Totals(
            self.activity_count + other.activity_count,
            self.distance_meters + other.distance_meters,
            self.moving_seconds + other.moving_seconds,
            self.elevation_gain_meters + other.elevation_gain_meters,
            self.training_load + other.training_load,
            self.estimated_load_count + other.estimated_load_count,
        )


@dataclass(frozen=True)
class PeriodTotals:
    start: dt.date
    end: dt.date
    totals: Totals
    # Per sport type (domain names), when asked for; only sports with activities.
    sports: dict[str, Totals] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSummary:
    period: Period
    start: dt.date
    end: dt.date
    time_zone: str
    periods: list[PeriodTotals]


@dataclass(frozen=True)
class FitnessTrend:
    start: dt.date
    end: dt.date
    time_zone: str
    points: list[FitnessPoint]


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
        self,
        athlete_id: str,
        performance: Performance,
        day: dt.date | None,
        date_field: str = "",
    ) -> GradedPerformance:
        """Sex from the stored profile (FAILED_PRECONDITION when it gives no grade); the
        distance from the request (INVALID_ARGUMENT); the age from both: a `day` given in
        the request (`date_field`) that puts it out of range is INVALID_ARGUMENT there."""
        _check_time(performance)
        athlete = self._athlete(athlete_id)
        on = day or self.today(athlete.profile.time_zone)
        birth = athlete.profile.birth_date
        if day is not None and birth is not None and day < birth:
            raise InvalidArgument(
                [FieldViolation(date_field, "must not be before the athlete's birth date")],
                reason="AGE_NOT_GRADED",
            )
        age = _stored_age(athlete, on)

        def refuse(reason: NoGradeReason) -> Exception:
            if reason == NoGradeReason.DISTANCE_OUT_OF_RANGE:
                return _invalid(performance.distance_field, reason)
            if reason == NoGradeReason.AGE_OUT_OF_RANGE and day is not None:
                return _invalid(date_field, reason)
            return _precondition(reason)

        return _grade(age, athlete.profile.sex, performance, refuse)

    def grade_activity(self, athlete_id: str, activity_id: str) -> GradedPerformance:
        """Everything from stored data: no grade is FAILED_PRECONDITION."""
        with self.db.read_only() as session:
            activity = ActivityRepository(session).get(athlete_id, activity_id)
        if activity is None:
            raise NotFound(ACTIVITY_RESOURCE, names.activity_name(athlete_id, activity_id))
        if activity.edit.sport_type not in RUNNING_SPORTS:
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

    def training_summary(
        self,
        athlete_id: str,
        period: Period,
        start: dt.date | None,
        end: dt.date | None,
        sport_types: Sequence[str] = (),
        per_sport: bool = False,
    ) -> TrainingSummary:
        """Totals per ISO week or month in the athlete's time zone, over [start, end]
        widened to whole periods, every period present (see GetTrainingSummary)."""
        _check_range(start, end)
        athlete = self._athlete(athlete_id)
        zone_name = athlete.profile.time_zone or "UTC"
        zone = ZoneInfo(zone_name)
        try:
            end = end or self.today(zone_name)
            if start is None:
                start = periods_before(period_start(end, period), DEFAULT_PERIODS - 1, period)
            _check_range(start, end)
            first, last = period_start(start, period), period_end(end, period)
            after = last + dt.timedelta(days=1)
        except (OverflowError, ValueError):
            raise _beyond_dates() from None
        with self.db.read_only() as session:
            rows = TrainingRepository(session).totals(
                athlete_id,
                period,
                zone_name,
                local_midnight(first, zone),
                local_midnight(after, zone),
                sport_types,
            )
        by_start: dict[dt.date, list[BucketTotals]] = {}
        for row in rows:
            by_start.setdefault(row.start, []).append(row)
        periods = []
        for bucket in period_starts(first, last, period):
            sports = {row.sport_type: _totals(row) for row in by_start.get(bucket, [])}
            total = Totals()
            for sport in sorted(sports):
                total = total.plus(sports[sport])
            periods.append(
                PeriodTotals(bucket, period_end(bucket, period), total, sports if per_sport else {})
            )
        return TrainingSummary(period, first, last, zone_name, periods)

    def fitness_trend(
        self, athlete_id: str, start: dt.date | None, end: dt.date | None
    ) -> FitnessTrend:
        """One point per day of [start, end] in the athlete's time zone; the averages run
        over the history before `start` (see GetFitnessTrend and TREND_HISTORY_DAYS)."""
        _check_range(start, end)
        athlete = self._athlete(athlete_id)
        zone_name = athlete.profile.time_zone or "UTC"
        zone = ZoneInfo(zone_name)
        try:
            end = end or self.today(zone_name)
            start = start or end - dt.timedelta(days=DEFAULT_TREND_DAYS - 1)
            _check_range(start, end)
            after = end + dt.timedelta(days=1)  # also: the series steps one day past `end`
        except (OverflowError, ValueError):
            raise _beyond_dates() from None
        history = start - dt.timedelta(days=min(TREND_HISTORY_DAYS, start.toordinal() - 1))
        with self.db.read_only() as session:
            rows = TrainingRepository(session).totals(
                athlete_id,
                Period.DAY,
                zone_name,
                local_midnight(history, zone),
                local_midnight(after, zone),
            )
        loads: dict[dt.date, float] = {}
        counts: dict[dt.date, int] = {}
        for row in rows:
            loads[row.start] = loads.get(row.start, 0.0) + row.training_load
            counts[row.start] = counts.get(row.start, 0) + row.estimated_load_count
        points = fitness_series(loads, start, end, estimated_counts=counts)
        return FitnessTrend(start, end, zone_name, points)

    def _athlete(self, athlete_id: str) -> Athlete:
        with self.db.read_only() as session:
            return require_athlete(session, athlete_id)


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


def _totals(row: BucketTotals) -> Totals:
    return Totals(
        row.activity_count,
        row.distance_meters,
        row.moving_seconds,
        row.elevation_gain_meters,
        row.training_load,
        row.estimated_load_count,
    )


def _check_range(start: dt.date | None, end: dt.date | None) -> None:
    """Both ends inclusive: an end before the start, or more than MAX_RANGE_DAYS days, is
    INVALID_ARGUMENT (only checked when both are known)."""
    if start is None or end is None:
        return
    if end < start:
        raise InvalidArgument([FieldViolation("end_date", "must not be before start_date")])
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise InvalidArgument(
            [FieldViolation("end_date", f"the range must not exceed {MAX_RANGE_DAYS:,} days")]
        )


def _beyond_dates() -> InvalidArgument:
    return InvalidArgument(
        [FieldViolation("end_date", "the range reaches beyond the supported dates (years 1-9999)")]
    )


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

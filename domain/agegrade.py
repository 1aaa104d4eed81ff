"""Road age grading, 2025 edition (USATF Masters Long Distance Running, Alan Jones; CC0).

The published tables are not shipped: they are reproduced by the curve model they were built
from, so any distance between the mile and 200 km gets a factor, not only the 22 table events.
The model reproduces all 4,224 published factors exactly (tests/test_agegrade.py checks them
against ../shared/agegrade/).

How a factor is obtained, for a sex, an age in whole years and a distance:

- At a key event (mile, 5 km, 10 km, half marathon, marathon) the factor is that event's age
  curve (`_curve`), rounded half-up to 4 decimals as the spreadsheet does.
- Between two neighbouring key events the factor is interpolated linearly in log10(distance)
  between the two neighbours' rounded factors, and rounded again. The published tables only
  show this for events between 5 km and the marathon (6 km ... 30 km all match it); they have
  no event between the mile and 5 km, so nothing published says how that range is graded.
  The mile column is the mile curve itself, not a 5 km factor, so the mile is a key event like
  the others, and the same rule is applied between the mile and 5 km.
- Beyond the marathon the marathon factor is used (the 50 km ... 200 km columns equal it).
- Two values were set by hand in the published tables and are honoured at those exact events:
  men's 12 km at age 80 is 0.6218 (the rule gives 0.6273) and women's mile at ages 31-34 is
  1.0000 (the curve gives 0.9998 ... 0.9961). The women's mile exception is a published mile
  factor, so it is also the mile neighbour when interpolating towards 5 km; the 12 km one
  touches only 12 km itself, which is no key event.

Factors are `Decimal`s with exactly 4 places: they are table values, compared and shown as
such, and a float would turn 0.5073 into 0.50729999...
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from domain.athletes import AthleteProfile, Sex

MIN_AGE = 5
MAX_AGE = 100
MILE_M = 1609.344
# Distances differing by less than this are the same distance: absorbs float noise from unit
# conversions (miles, kilometres) without letting a measured distance snap to an event.
_SAME_DISTANCE_M = 1e-6
_FOUR_PLACES = Decimal("0.0001")


class NoGradeReason(StrEnum):
    """Why a performance has no age grade; the API reports it as a status."""

    SEX_UNKNOWN = "SEX_UNKNOWN"  # only male and female have tables
    AGE_OUT_OF_RANGE = "AGE_OUT_OF_RANGE"  # tables cover ages 5 to 100
    DISTANCE_OUT_OF_RANGE = "DISTANCE_OUT_OF_RANGE"  # tables cover the mile to 200 km
    TIME_NOT_POSITIVE = "TIME_NOT_POSITIVE"  # a grade needs a positive, finite time


@dataclass(frozen=True)
class CurveParameters:
    """One age curve: rising from a to c, flat (1.0) from c to d, falling after d.

    Below a the rise is quadratic plus linear, from a to b linear, from b to c quadratic; after
    d the fall is quadratic to e, linear to f, and linear plus quadratic after f.
    """

    a: float
    b: float
    c: float
    A: float  # the published parameter names
    B: float
    d: float
    e: float
    f: float
    E: float
    F: float


@dataclass(frozen=True)
class KeyEvent:
    """A distance with its own age curves; every other distance is derived from these."""

    code: str
    distance_m: float
    male: CurveParameters
    female: CurveParameters


@dataclass(frozen=True)
class TableEvent:
    """One of the 22 events of the published tables, with its open-class standards."""

    code: str
    name: str
    distance_m: float
    male_standard_s: int
    female_standard_s: int


KEY_EVENTS: tuple[KeyEvent, ...] = (
    KeyEvent(
        "1M",
        MILE_M,
        CurveParameters(15, 17, 19, 0.0018, 0.017, 29, 30.5, 68.25, 0.00694, 0.000349),
        CurveParameters(15, 17, 19, 0.0007, 0.016, 30.1, 49, 78.5, 0.00971, 0.00047),
    ),
    KeyEvent(
        "5K",
        5000.0,
        CurveParameters(16, 17, 18.4, 0.0024, 0.008, 29.6, 35.4, 67.3, 0.007, 0.0003),
        CurveParameters(14.3, 17, 19, 0.00074, 0.0189, 26, 45, 76.8, 0.00971, 0.00038),
    ),
    KeyEvent(
        "10K",
        10000.0,
        CurveParameters(19, 20, 21, 0.002, 0.0065, 30, 40.3, 70, 0.0075, 0.000335),
        CurveParameters(15, 17, 21, 0.00091, 0.016, 27, 49.3, 75, 0.00994, 0.00038),
    ),
    KeyEvent(
        "HM",
        21097.5,
        CurveParameters(16.7, 19, 20, 0.00287, 0.01, 31, 39.7, 70, 0.00778, 0.000341),
        CurveParameters(15, 17, 22, 0.00102, 0.02, 27, 48.9, 75.15, 0.01035, 0.0004),
    ),
    KeyEvent(
        "MAR",
        42195.0,
        CurveParameters(16, 17, 22, 0.00222, 0.02, 35.7, 39, 71, 0.0082, 0.00035),
        CurveParameters(15, 19, 26, 0.00155, 0.0174, 27, 56.2, 73, 0.01106, 0.0004),
    ),
)

TABLE_EVENTS: tuple[TableEvent, ...] = (
    TableEvent("1M", "Mile", MILE_M, 227, 253),
    TableEvent("5K", "5 km", 5000.0, 769, 834),
    TableEvent("6K", "6 km", 6000.0, 930, 1010),
    TableEvent("4M", "4 miles", 4 * MILE_M, 1000, 1087),
    TableEvent("8K", "8 km", 8000.0, 1255, 1365),
    TableEvent("5M", "5 miles", 5 * MILE_M, 1264, 1375),
    TableEvent("10K", "10 km", 10000.0, 1584, 1726),
    TableEvent("7M", "7 miles", 7 * MILE_M, 1790, 1950),
    TableEvent("12K", "12 km", 12000.0, 1915, 2084),
    TableEvent("15K", "15 km", 15000.0, 2415, 2629),
    TableEvent("10M", "10 miles", 10 * MILE_M, 2595, 2832),
    TableEvent("20K", "20 km", 20000.0, 3260, 3557),
    TableEvent("HM", "Half marathon", 21097.5, 3451, 3772),
    TableEvent("25K", "25 km", 25000.0, 4110, 4500),
    TableEvent("30K", "30 km", 30000.0, 4980, 5450),
    TableEvent("MAR", "Marathon", 42195.0, 7235, 7796),
    TableEvent("50K", "50 km", 50000.0, 8820, 9390),
    TableEvent("50M", "50 miles", 50 * MILE_M, 16080, 17100),
    TableEvent("100K", "100 km", 100000.0, 21360, 23591),
    TableEvent("150K", "150 km", 150000.0, 36300, 39700),
    TableEvent("100M", "100 miles", 100 * MILE_M, 39790, 43500),
    TableEvent("200K", "200 km", 200000.0, 52800, 57600),
)

MIN_DISTANCE_M = TABLE_EVENTS[0].distance_m
MAX_DISTANCE_M = TABLE_EVENTS[-1].distance_m

# Published values set by hand, overriding the model: (sex, event distance, age) -> factor.
_EXCEPTIONS: dict[tuple[Sex, float, int], Decimal] = {
    (Sex.MALE, 12000.0, 80): Decimal("0.6218"),
    **{(Sex.FEMALE, MILE_M, age): Decimal("1.0000") for age in range(31, 35)},
}


@dataclass(frozen=True)
class AgeGrade:
    """A graded performance.

    graded_time_seconds is the time the runner could have run at peak age (time x factor);
    percentage compares that with the open-class standard (100 x OC / graded time).
    """

    factor: Decimal
    graded_time_seconds: float
    percentage: float


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Age in whole years on `day` (the performance's date in the athlete's time zone).

    A birthday on 29 February is reached on 1 March in common years: the age goes up on the
    first day that is not before the birthday in the calendar.
    """
    if day < birth_date:
        raise ValueError("the day is before the birth date")
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - before_birthday


def why_no_grade(
    sex: Sex, age: int, distance_m: float, time_seconds: float | None = None
) -> NoGradeReason | None:
    """The reason a performance cannot be graded, or None if it can.

    age_factor, open_standard_seconds and age_grade return None exactly when this says why.
    """
    if sex not in (Sex.MALE, Sex.FEMALE):
        return NoGradeReason.SEX_UNKNOWN
    if not MIN_AGE <= age <= MAX_AGE:
        return NoGradeReason.AGE_OUT_OF_RANGE
    if not _distance_in_range(distance_m):
        return NoGradeReason.DISTANCE_OUT_OF_RANGE
    if time_seconds is not None and not (math.isfinite(time_seconds) and time_seconds > 0):
        return NoGradeReason.TIME_NOT_POSITIVE
    return None


def age_factor(sex: Sex, age: int, distance_m: float) -> Decimal | None:
    """The published-table factor (4 places) for a sex, an age and a distance; None if none."""
    if why_no_grade(sex, age, distance_m) is not None:
        return None
    for (ex_sex, ex_distance, ex_age), factor in _EXCEPTIONS.items():
        if ex_sex == sex and ex_age == age and _same_distance(ex_distance, distance_m):
            return factor
    if distance_m >= KEY_EVENTS[-1].distance_m:
        return _key_factor(KEY_EVENTS[-1], sex, age)
    for lower, upper in itertools.pairwise(KEY_EVENTS):
        if distance_m < upper.distance_m:
            return _round4(
                _log_interpolate(
                    lower.distance_m,
                    float(_key_factor(lower, sex, age)),
                    upper.distance_m,
                    float(_key_factor(upper, sex, age)),
                    distance_m,
                )
            )
    raise AssertionError("unreachable: the distance is within range")


def open_standard_seconds(sex: Sex, distance_m: float) -> float | None:
    """The open-class standard: the table value at a table event, and between two table events
    the value that makes log(standard) linear in log(distance). None outside mile-200 km or for
    a sex without tables."""
    if why_no_grade(sex, MIN_AGE, distance_m) is not None:
        return None
    for lower, upper in itertools.pairwise(TABLE_EVENTS):
        if _same_distance(lower.distance_m, distance_m):
            return float(_standard(lower, sex))
        if distance_m < upper.distance_m:
            return math.exp(
                _log_interpolate(
                    lower.distance_m,
                    math.log(_standard(lower, sex)),
                    upper.distance_m,
                    math.log(_standard(upper, sex)),
                    distance_m,
                )
            )
    return float(_standard(TABLE_EVENTS[-1], sex))


def age_grade(sex: Sex, age: int, distance_m: float, time_seconds: float) -> AgeGrade | None:
    """Grade a performance; None when why_no_grade gives a reason."""
    if why_no_grade(sex, age, distance_m, time_seconds) is not None:
        return None
    factor = age_factor(sex, age, distance_m)
    standard = open_standard_seconds(sex, distance_m)
    assert factor is not None
    assert standard is not None
    graded = time_seconds * float(factor)
    return AgeGrade(factor=factor, graded_time_seconds=graded, percentage=100 * standard / graded)


def _curve(p: CurveParameters, x: float) -> float:
    """The unrounded factor of one key event at age x (the model's seven pieces)."""
    rise = p.B / (2 * (p.c - p.b))  # C: makes the rise meet 1.0 smoothly at c
    fall = p.E / (2 * (p.e - p.d))  # D: makes the fall leave 1.0 smoothly at d
    if x < p.a:
        return 1 - rise * (p.c - p.b) ** 2 - p.B * (p.b - x) - p.A * (p.a - x) ** 2
    if x < p.b:
        return 1 - rise * (p.c - p.b) ** 2 - p.B * (p.b - x)
    if x < p.c:
        return 1 - rise * (p.c - x) ** 2
    if x < p.d:
        return 1.0
    if x < p.e:
        return 1 - fall * (x - p.d) ** 2
    if x < p.f:
        return 1 - fall * (p.e - p.d) ** 2 - p.E * (x - p.e)
    return 1 - fall * (p.e - p.d) ** 2 - p.E * (x - p.e) - p.F * (x - p.f) ** 2


def _key_factor(event: KeyEvent, sex: Sex, age: int) -> Decimal:
    """A key event's published factor: an exception if one was set, else the rounded curve."""
    exception = _EXCEPTIONS.get((sex, event.distance_m, age))
    if exception is not None:
        return exception
    return _round4(_curve(event.male if sex == Sex.MALE else event.female, age))


def _round4(value: float) -> Decimal:
    """Half-up to 4 places after rounding to 10, as the spreadsheet's ROUND does: the float
    0.8332499999999999 is the decimal 0.83325 and must give 0.8333, not 0.8332."""
    return Decimal(repr(round(value, 10))).quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)


def _log_interpolate(x0: float, y0: float, x1: float, y1: float, x: float) -> float:
    """y at x on the line through (log x0, y0) and (log x1, y1)."""
    t = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0))
    return y0 + (y1 - y0) * t


def _standard(event: TableEvent, sex: Sex) -> int:
    return event.male_standard_s if sex == Sex.MALE else event.female_standard_s


def _same_distance(a: float, b: float) -> bool:
    return abs(a - b) < _SAME_DISTANCE_M


def _distance_in_range(distance_m: float) -> bool:
    return MIN_DISTANCE_M - _SAME_DISTANCE_M <= distance_m <= MAX_DISTANCE_M + _SAME_DISTANCE_M


@dataclass(frozen=True)
class GradedPerformance:
    """A performance with its grade and what it was graded on."""

    age: int
    sex: Sex
    distance_meters: float
    time_seconds: float
    grade: AgeGrade
    open_standard_seconds: float


def grade_for(
    profile: AthleteProfile, day: dt.date, distance_m: float, time_seconds: float
) -> GradedPerformance | None:
    """The grade of a stored athlete's performance on `day` (a date in their time zone);
    None when there is none (no birth date, a day before it, or what why_no_grade says)."""
    birth = profile.birth_date
    if birth is None or day < birth:
        return None
    age = age_on(birth, day)
    grade = age_grade(profile.sex, age, distance_m, time_seconds)
    standard = open_standard_seconds(profile.sex, distance_m)
    if grade is None or standard is None:
        return None
    return GradedPerformance(age, profile.sex, distance_m, time_seconds, grade, standard)

"""Training load (Banister TRIMP) and the fitness trend built on it.

The model is fixed by the contract (`protos/stride/v1/analytics.proto`, AnalyticsService and
FitnessPoint): TRIMP units, k = 0.64, b = 1.92 for men and when sex is unset, k = 0.86,
b = 1.67 for women; the athlete's heart rates, else 220 - age (190 without a birth date) and
60; chronic and acute load as x += (load - x) / N with N = 42 and 7 over the whole history;
balance = chronic - acute at the end of the same day.

Where the contract is silent this module chooses, and says so here:

- A sample's heart rate holds until the next sample (recorders sample a value that stays
  current until replaced), so an interval takes the heart rate at its start; an interval
  whose start has no heart rate is skipped.
- An interval longer than `MAX_SAMPLE_GAP_SECONDS` is a pause (auto-pause, lost sensor):
  it is skipped whole, since nothing says what the heart did during it.
- "Without heart-rate samples" means no interval could be counted from the samples (none
  has a heart rate, or all are pauses): such an activity falls back to its average heart
  rate, then to the HRr 0.5 estimate.
- The average heart rate, like the estimate, is taken over the moving time, or the elapsed
  time when no moving time is known (None; a moving time of zero is taken as known).
- When the heart-rate reserve is not positive (a resting rate at or above the maximum, as
  a set resting rate with a defaulted maximum can give), measured heart rates cannot be
  placed in it: the activity is estimated at HRr 0.5 and counted as estimated.
- An activity dated before the athlete's birth date (bad data) takes the maximum rate of an
  athlete without a birth date (190).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from domain.activities import Measurements, Sample
from domain.agegrade import age_on
from domain.athletes import AthleteProfile, Sex

# Banister's constants: (k, b) of the weighting k * e^(b * HRr).
MEN = (0.64, 1.92)
WOMEN = (0.86, 1.67)
DEFAULT_RESTING_HR = 60
MAX_HR_WITHOUT_AGE = 190
# The HRr an activity without any usable heart rate is assumed to have been done at.
ESTIMATED_HRR = 0.5
# Longer intervals between samples are pauses and count for nothing.
MAX_SAMPLE_GAP_SECONDS = 60.0
CHRONIC_DAYS = 42
ACUTE_DAYS = 7

HeartRatePoint = tuple[float, int | None]


@dataclass(frozen=True)
class Load:
    """An activity's training load in TRIMP units; `estimated` when no heart rate was used."""

    value: float
    estimated: bool


@dataclass(frozen=True)
class FitnessPoint:
    """One day of the trend; loads in TRIMP units, averages at the end of the day."""

    day: dt.date
    training_load: float
    chronic_load: float
    acute_load: float
    balance: float
    estimated_load_count: int = 0


def heart_rate_reserve_limits(profile: AthleteProfile, on: dt.date) -> tuple[int, int]:
    """(maximum, resting) heart rate for a day, the profile's or the contract's defaults.

    The age-predicted maximum uses the age on `on` (the activity's day), so old activities
    are weighed with the athlete's heart as it was then, not as it is today.
    """
    maximum = profile.max_heart_rate_bpm
    if maximum is None:
        if profile.birth_date is None or on < profile.birth_date:
            maximum = MAX_HR_WITHOUT_AGE
        else:
            maximum = 220 - age_on(profile.birth_date, on)
    resting = profile.resting_heart_rate_bpm
    if resting is None:
        resting = DEFAULT_RESTING_HR
    return maximum, resting


def heart_rate_points(samples: Iterable[Sample], start_time: dt.datetime) -> list[HeartRatePoint]:
    """Samples as (seconds since `start_time`, heart rate) for `trimp_from_samples`."""
    return [((s.time - start_time).total_seconds(), s.heart_rate_bpm) for s in samples]


def trimp_from_samples(
    samples: Sequence[HeartRatePoint], max_hr: float, rest_hr: float, sex: Sex
) -> float:
    """TRIMP of (elapsed seconds, heart rate) points: the sum over counted intervals.

    Points are taken in time order. See the module for which intervals count. Raises
    ValueError when the heart-rate reserve (max - rest) is not positive.
    """
    return _trimp_and_count(samples, max_hr, rest_hr, sex)[0]


def activity_load(
    measurements: Measurements,
    samples: Sequence[HeartRatePoint],
    profile: AthleteProfile,
    on: dt.date,
) -> Load:
    """An activity's load: from its heart-rate samples, else its average, else estimated.

    `on` is the activity's day in the athlete's time zone (for the age-predicted maximum).
    """
    max_hr, rest_hr = heart_rate_reserve_limits(profile, on)
    duration = measurements.elapsed if measurements.moving is None else measurements.moving
    minutes = duration.total_seconds() / 60
    if max_hr <= rest_hr:
        return Load(minutes * _weighted(ESTIMATED_HRR, profile.sex), estimated=True)
    trimp, counted = _trimp_and_count(samples, max_hr, rest_hr, profile.sex)
    if counted:
        return Load(trimp, estimated=False)
    average = measurements.average_heart_rate_bpm
    if average is not None:
        hrr = _reserve_fraction(average, max_hr, rest_hr)
        return Load(minutes * _weighted(hrr, profile.sex), estimated=False)
    return Load(minutes * _weighted(ESTIMATED_HRR, profile.sex), estimated=True)


def fitness_series(
    daily_loads: Mapping[dt.date, float],
    start: dt.date,
    end: dt.date,
    *,
    estimated_counts: Mapping[dt.date, int] | None = None,
) -> list[FitnessPoint]:
    """One point per day from `start` to `end` inclusive, oldest first.

    The averages start from 0 before the first day in `daily_loads` and run over every day
    since, so the caller passes the whole history from the athlete's first activity: days
    before `start` are not returned but do count. Days after `end` are ignored; days with no
    entry have zero load.
    """
    if end < start:
        raise ValueError("the range ends before it starts")
    counts = estimated_counts or {}
    day = min([start, *daily_loads])
    chronic = acute = 0.0
    points: list[FitnessPoint] = []
    while day <= end:
        load = daily_loads.get(day, 0.0)
        chronic += (load - chronic) / CHRONIC_DAYS
        acute += (load - acute) / ACUTE_DAYS
        if day >= start:
            points.append(
                FitnessPoint(day, load, chronic, acute, chronic - acute, counts.get(day, 0))
            )
        day += dt.timedelta(days=1)
    return points


def _trimp_and_count(
    samples: Sequence[HeartRatePoint], max_hr: float, rest_hr: float, sex: Sex
) -> tuple[float, int]:
    """TRIMP and the number of intervals counted (0 means the samples had nothing usable)."""
    if max_hr <= rest_hr:
        raise ValueError("the maximum heart rate must be above the resting heart rate")
    ordered = sorted(samples, key=lambda point: point[0])
    total = 0.0
    counted = 0
    for (t0, hr), (t1, _) in pairwise(ordered):
        seconds = t1 - t0
        if hr is None or not 0 < seconds <= MAX_SAMPLE_GAP_SECONDS:
            continue
        total += seconds / 60 * _weighted(_reserve_fraction(hr, max_hr, rest_hr), sex)
        counted += 1
    return total, counted


def _reserve_fraction(hr: float, max_hr: float, rest_hr: float) -> float:
    """HRr clamped to [0, 1]: below resting does no work, above the maximum no more."""
    return min(1.0, max(0.0, (hr - rest_hr) / (max_hr - rest_hr)))


def _weighted(hrr: float, sex: Sex) -> float:
    """TRIMP per minute at `hrr`: HRr * k * e^(b * HRr)."""
    k, b = WOMEN if sex is Sex.FEMALE else MEN
    return hrr * k * math.exp(b * hrr)

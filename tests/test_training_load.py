"""Training load (domain.training_load): TRIMP worked by hand, fallbacks, and the trend."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.activities import Measurements, Sample
from domain.athletes import AthleteProfile, Sex
from domain.training_load import (
    FitnessPoint,
    Load,
    activity_load,
    fitness_series,
    heart_rate_points,
    heart_rate_reserve_limits,
    trimp_from_samples,
)

# With maximum 190 and resting 60, 125 bpm is HRr (125 - 60) / (190 - 60) = 0.5.
MAX_HR, REST_HR, HALF_HRR_BPM = 190, 60, 125
# 60 min * 0.5 * 0.64 * e^(1.92 * 0.5) = 19.2 * e^0.96 = 19.2 * 2.611696 (men).
MEN_HOUR_AT_HALF = 50.14457
# 60 min * 0.5 * 0.86 * e^(1.67 * 0.5) = 25.8 * e^0.835 = 25.8 * 2.304814 (women).
WOMEN_HOUR_AT_HALF = 59.46420
# 60 min * 1 * 0.64 * e^1.92 = 38.4 * 6.820958 (men at HRr 1).
MEN_HOUR_AT_FULL = 261.92481
START = dt.datetime(2025, 3, 1, 8, tzinfo=dt.UTC)
DAY = START.date()


def profile(
    *,
    birth_date: dt.date | None = None,
    sex: Sex = Sex.UNSPECIFIED,
    max_heart_rate_bpm: int | None = None,
    resting_heart_rate_bpm: int | None = None,
) -> AthleteProfile:
    return AthleteProfile(
        display_name="Runner",
        time_zone="UTC",
        birth_date=birth_date,
        sex=sex,
        max_heart_rate_bpm=max_heart_rate_bpm,
        resting_heart_rate_bpm=resting_heart_rate_bpm,
    )


def steady(bpm: int | None, minutes: int = 60, every: int = 1) -> list[tuple[float, int | None]]:
    return [(float(t), bpm) for t in range(0, minutes * 60 + 1, every)]


def hour(
    moving: dt.timedelta | None = dt.timedelta(minutes=60), average: float | None = None
) -> Measurements:
    return Measurements(
        start_time=START,
        elapsed=dt.timedelta(minutes=90),
        moving=moving,
        average_heart_rate_bpm=average,
    )


# TRIMP from samples


@pytest.mark.parametrize(
    ("sex", "expected"),
    [
        (Sex.MALE, MEN_HOUR_AT_HALF),
        (Sex.UNSPECIFIED, MEN_HOUR_AT_HALF),
        (Sex.FEMALE, WOMEN_HOUR_AT_HALF),
    ],
)
def test_an_hour_at_half_the_reserve_worked_by_hand(sex: Sex, expected: float) -> None:
    trimp = trimp_from_samples(steady(HALF_HRR_BPM), MAX_HR, REST_HR, sex)
    assert trimp == pytest.approx(expected, abs=1e-4)


def test_sampling_rate_does_not_change_the_load() -> None:
    every_second = trimp_from_samples(steady(HALF_HRR_BPM), MAX_HR, REST_HR, Sex.MALE)
    every_ten = trimp_from_samples(steady(HALF_HRR_BPM, every=10), MAX_HR, REST_HR, Sex.MALE)
    assert every_ten == pytest.approx(every_second)


def test_heart_rate_reserve_is_clamped() -> None:
    below_rest = trimp_from_samples(steady(45), MAX_HR, REST_HR, Sex.MALE)
    at_max = trimp_from_samples(steady(MAX_HR), MAX_HR, REST_HR, Sex.MALE)
    above_max = trimp_from_samples(steady(215), MAX_HR, REST_HR, Sex.MALE)
    assert below_rest == 0
    assert at_max == pytest.approx(MEN_HOUR_AT_FULL, abs=1e-4)
    assert above_max == pytest.approx(MEN_HOUR_AT_FULL, abs=1e-4)


def test_intervals_without_heart_rate_are_skipped() -> None:
    # 30 min with heart rate, then 30 min without: half the hour's load.
    samples = [(float(t), HALF_HRR_BPM if t < 1800 else None) for t in range(3601)]
    trimp = trimp_from_samples(samples, MAX_HR, REST_HR, Sex.MALE)
    assert trimp == pytest.approx(MEN_HOUR_AT_HALF / 2, abs=1e-4)


def test_an_interval_takes_the_heart_rate_at_its_start() -> None:
    def one_minute(first: int | None, second: int | None) -> float:
        return trimp_from_samples([(0.0, first), (60.0, second)], MAX_HR, REST_HR, Sex.MALE)

    assert one_minute(HALF_HRR_BPM, None) == pytest.approx(MEN_HOUR_AT_HALF / 60)
    assert one_minute(HALF_HRR_BPM, MAX_HR) == pytest.approx(MEN_HOUR_AT_HALF / 60)
    assert one_minute(None, HALF_HRR_BPM) == 0


def test_a_pause_between_samples_is_not_counted() -> None:
    # 20 min, a 10-minute pause, 20 min: 40 minutes count, the pause does not.
    first = [(float(t), HALF_HRR_BPM) for t in range(0, 1201)]
    second = [(float(t), HALF_HRR_BPM) for t in range(1800, 3001)]
    trimp = trimp_from_samples(first + second, MAX_HR, REST_HR, Sex.MALE)
    assert trimp == pytest.approx(MEN_HOUR_AT_HALF * 40 / 60, abs=1e-4)


def test_sixty_seconds_between_samples_is_not_yet_a_pause() -> None:
    counted = trimp_from_samples([(0.0, 125), (60.0, 125)], MAX_HR, REST_HR, Sex.MALE)
    paused = trimp_from_samples([(0.0, 125), (60.5, 125)], MAX_HR, REST_HR, Sex.MALE)
    assert counted == pytest.approx(MEN_HOUR_AT_HALF / 60)
    assert paused == 0


def test_samples_out_of_order_or_repeated_give_the_same_load() -> None:
    samples = steady(HALF_HRR_BPM, every=5)
    shuffled = samples[1::2] + samples[::2] + samples[:3]
    expected = trimp_from_samples(samples, MAX_HR, REST_HR, Sex.MALE)
    assert trimp_from_samples(shuffled, MAX_HR, REST_HR, Sex.MALE) == pytest.approx(expected)


def test_no_or_one_sample_is_no_load() -> None:
    assert trimp_from_samples([], MAX_HR, REST_HR, Sex.MALE) == 0
    assert trimp_from_samples([(0.0, 150)], MAX_HR, REST_HR, Sex.MALE) == 0


def test_a_reserve_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="above the resting"):
        trimp_from_samples(steady(120), 150, 150, Sex.MALE)


def test_heart_rate_points_are_seconds_since_the_start() -> None:
    samples = [
        Sample(time=START, heart_rate_bpm=120),
        Sample(time=START + dt.timedelta(seconds=2.5)),
    ]
    assert heart_rate_points(samples, START) == [(0.0, 120), (2.5, None)]


# Maximum and resting heart rate


def test_the_profiles_heart_rates_are_used() -> None:
    athlete = profile(
        max_heart_rate_bpm=181, resting_heart_rate_bpm=48, birth_date=dt.date(1980, 1, 1)
    )
    assert heart_rate_reserve_limits(athlete, DAY) == (181, 48)


def test_without_birth_date_the_defaults_are_190_and_60() -> None:
    assert heart_rate_reserve_limits(profile(), DAY) == (190, 60)


def test_the_maximum_is_220_minus_the_age_on_the_day() -> None:
    athlete = profile(birth_date=dt.date(1990, 6, 15), resting_heart_rate_bpm=52)
    assert heart_rate_reserve_limits(athlete, dt.date(2025, 6, 14)) == (220 - 34, 52)
    assert heart_rate_reserve_limits(athlete, dt.date(2025, 6, 15)) == (220 - 35, 52)


def test_a_day_before_the_birth_date_is_treated_as_no_birth_date() -> None:
    athlete = profile(birth_date=dt.date(2000, 1, 1))
    assert heart_rate_reserve_limits(athlete, dt.date(1999, 12, 31)) == (190, 60)


# An activity's load and its fallbacks


def test_samples_with_heart_rate_come_first() -> None:
    # The average (which would give HRr 1) is ignored when the samples have heart rate.
    load = activity_load(hour(average=MAX_HR), steady(HALF_HRR_BPM), profile(), DAY)
    assert load.value == pytest.approx(MEN_HOUR_AT_HALF, abs=1e-4)
    assert not load.estimated


@pytest.mark.parametrize(
    "samples",
    [[], steady(None), [(0.0, 150), (600.0, 150), (1200.0, None)]],
    ids=["none", "no-heart-rate", "only-pauses"],
)
def test_without_usable_samples_the_average_over_moving_time(
    samples: list[tuple[float, int | None]],
) -> None:
    load = activity_load(hour(average=HALF_HRR_BPM), samples, profile(), DAY)
    assert load.value == pytest.approx(MEN_HOUR_AT_HALF, abs=1e-4)
    assert not load.estimated


def test_samples_below_resting_are_no_load_not_a_fallback() -> None:
    # Heart rate was measured, and it did no work: the average is not consulted.
    load = activity_load(hour(average=HALF_HRR_BPM), steady(50), profile(), DAY)
    assert load == Load(0.0, estimated=False)


def test_the_average_is_clamped_too() -> None:
    load = activity_load(hour(average=230), [], profile(), DAY)
    assert load.value == pytest.approx(MEN_HOUR_AT_FULL, abs=1e-4)


def test_without_any_heart_rate_half_the_reserve_is_estimated() -> None:
    # The profile's heart rates do not matter for the estimate: HRr is 0.5 by definition.
    athlete = profile(sex=Sex.FEMALE, max_heart_rate_bpm=200, resting_heart_rate_bpm=40)
    load = activity_load(hour(), steady(None), athlete, DAY)
    assert load.value == pytest.approx(WOMEN_HOUR_AT_HALF, abs=1e-4)
    assert load.estimated


def test_without_moving_time_the_elapsed_time_counts() -> None:
    # Elapsed is 90 minutes in `hour`.
    estimated = activity_load(hour(moving=None), [], profile(), DAY)
    averaged = activity_load(hour(moving=None, average=HALF_HRR_BPM), [], profile(), DAY)
    assert estimated.value == pytest.approx(MEN_HOUR_AT_HALF * 1.5, abs=1e-4)
    assert estimated.estimated
    assert averaged.value == pytest.approx(MEN_HOUR_AT_HALF * 1.5, abs=1e-4)
    assert not averaged.estimated


def test_the_defaulted_maximum_follows_the_age_on_the_activitys_day() -> None:
    # Born 1985-03-01: 40 on 2025-03-01, so the maximum is 180 and 120 bpm is HRr 0.5.
    athlete = profile(birth_date=dt.date(1985, 3, 1))
    load = activity_load(hour(), steady(120), athlete, DAY)
    assert load.value == pytest.approx(MEN_HOUR_AT_HALF, abs=1e-4)
    # A day earlier the athlete was 39 (maximum 181): 120 bpm is just below half.
    earlier = activity_load(hour(), steady(120), athlete, DAY - dt.timedelta(days=1))
    assert earlier.value < MEN_HOUR_AT_HALF - 0.1


@pytest.mark.parametrize("born", [1945, 1955], ids=["max-140", "max-150"])
def test_a_reserve_that_is_not_positive_is_estimated(born: int) -> None:
    # A resting rate of 150 with the default maximum of 220 - 80 = 140, or 220 - 70 = 150.
    athlete = profile(birth_date=dt.date(born, 1, 1), resting_heart_rate_bpm=150)
    load = activity_load(hour(average=150), steady(150), athlete, DAY)
    assert load.value == pytest.approx(MEN_HOUR_AT_HALF, abs=1e-4)
    assert load.estimated


# The fitness trend


def reference_loop(
    loads: dict[dt.date, float], first: dt.date, last: dt.date
) -> dict[dt.date, tuple[float, float]]:
    """(chronic, acute) of every day, the contract's recurrence written out plainly."""
    chronic = acute = 0.0
    out: dict[dt.date, tuple[float, float]] = {}
    for n in range((last - first).days + 1):
        day = first + dt.timedelta(days=n)
        load = loads.get(day, 0.0)
        chronic = chronic + (load - chronic) / 42
        acute = acute + (load - acute) / 7
        out[day] = (chronic, acute)
    return out


def closed_form(loads: dict[dt.date, float], day: dt.date, n: int) -> float:
    """x_d = sum over days i <= d of load_i / n * (1 - 1/n)^(d - i), from 0 before any load."""
    return sum(
        load / n * (1 - 1 / n) ** (day - when).days for when, load in loads.items() if when <= day
    )


def synthetic_history() -> dict[dt.date, float]:
    """Irregular training over 200 days with rest days (absent) and a zero-load day."""
    first = dt.date(2024, 6, 1)
    loads: dict[dt.date, float] = {}
    for n in range(200):
        if n % 7 in (2, 5):
            continue
        loads[first + dt.timedelta(days=n)] = 30.0 + (n * 37) % 90
    loads[first + dt.timedelta(days=3)] = 0.0
    return loads


def test_the_trend_matches_an_independent_loop_and_the_closed_form() -> None:
    loads = synthetic_history()
    start, end = dt.date(2024, 10, 1), dt.date(2025, 1, 31)  # ends 44 days after the last load
    points = fitness_series(loads, start, end)
    reference = reference_loop(loads, min(loads), end)

    assert [p.day for p in points] == [
        start + dt.timedelta(days=n) for n in range((end - start).days + 1)
    ]
    for point in points:
        chronic, acute = reference[point.day]
        assert point.training_load == loads.get(point.day, 0.0)
        assert point.chronic_load == pytest.approx(chronic, rel=1e-12)
        assert point.acute_load == pytest.approx(acute, rel=1e-12)
        assert point.chronic_load == pytest.approx(closed_form(loads, point.day, 42), rel=1e-9)
        assert point.acute_load == pytest.approx(closed_form(loads, point.day, 7), rel=1e-9)


def test_history_before_the_start_counts() -> None:
    loads = synthetic_history()
    start = dt.date(2024, 10, 1)
    first = fitness_series(loads, start, start)[0]
    only_the_range = {day: load for day, load in loads.items() if day >= start}
    without_history = fitness_series(only_the_range, start, start)[0]

    assert first.chronic_load == pytest.approx(reference_loop(loads, min(loads), start)[start][0])
    assert first.chronic_load > without_history.chronic_load + 10


def test_days_without_load_are_zero_and_decay_the_averages() -> None:
    loads = {dt.date(2025, 1, 1): 42.0}
    points = fitness_series(loads, dt.date(2025, 1, 1), dt.date(2025, 1, 3))
    # Worked by hand: day 1 chronic 42/42 = 1, acute 42/7 = 6; each empty day multiplies
    # chronic by 41/42 and acute by 6/7.
    assert [p.training_load for p in points] == [42.0, 0.0, 0.0]
    assert [p.chronic_load for p in points] == pytest.approx([1, 41 / 42, (41 / 42) ** 2])
    assert [p.acute_load for p in points] == pytest.approx([6, 36 / 7, 216 / 49])


def test_balance_is_chronic_minus_acute_at_the_end_of_the_same_day() -> None:
    loads = {dt.date(2025, 1, 1): 42.0}
    day_one = fitness_series(loads, dt.date(2025, 1, 1), dt.date(2025, 1, 1))[0]
    # Includes the day's own load: 1 - 6, not 0 - 0 from the day before.
    assert day_one.balance == pytest.approx(-5)
    for point in fitness_series(synthetic_history(), dt.date(2024, 8, 1), dt.date(2024, 9, 1)):
        assert point.balance == pytest.approx(point.chronic_load - point.acute_load)


def test_a_range_before_the_first_activity_is_all_zero() -> None:
    loads = {dt.date(2025, 2, 1): 80.0}
    points = fitness_series(loads, dt.date(2025, 1, 30), dt.date(2025, 2, 1))
    assert points[:2] == [
        FitnessPoint(dt.date(2025, 1, 30), 0.0, 0.0, 0.0, 0.0),
        FitnessPoint(dt.date(2025, 1, 31), 0.0, 0.0, 0.0, 0.0),
    ]
    assert points[2].chronic_load == pytest.approx(80 / 42)


def test_days_after_the_end_are_ignored() -> None:
    loads = {dt.date(2025, 1, 1): 50.0, dt.date(2025, 1, 5): 500.0}
    points = fitness_series(loads, dt.date(2025, 1, 1), dt.date(2025, 1, 4))
    assert len(points) == 4
    assert points[-1].chronic_load == pytest.approx(50 / 42 * (41 / 42) ** 3)


def test_estimated_counts_are_carried_per_day() -> None:
    loads = {dt.date(2025, 1, 1): 50.0, dt.date(2025, 1, 2): 60.0}
    counts = {dt.date(2025, 1, 2): 2}
    points = fitness_series(
        loads, dt.date(2025, 1, 1), dt.date(2025, 1, 2), estimated_counts=counts
    )
    assert [p.estimated_load_count for p in points] == [0, 2]


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before"):
        fitness_series({}, dt.date(2025, 1, 2), dt.date(2025, 1, 1))


def test_an_empty_history_gives_zero_points() -> None:
    points = fitness_series({}, dt.date(2025, 1, 1), dt.date(2025, 1, 1))
    assert points == [FitnessPoint(dt.date(2025, 1, 1), 0.0, 0.0, 0.0, 0.0)]

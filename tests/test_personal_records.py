"""Personal records: best efforts are kept when a run's samples are written (and dropped
when it stops being a run), and the records are the fastest of them, all-time or per year,
with their age grade. Real database (PostgreSQL and SQLite), no Strava."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.activities import ActivityEdit, Measurements, Sample
from domain.athletes import AthleteProfile, Sex
from domain.best_efforts import Distance
from domain.errors import InvalidArgument
from runtime import Runtime
from services.records import PersonalRecord
from storage.repositories.athletes import AthleteRepository
from tests.support import ServerThread, make_settings


@pytest.fixture
def runtime(database_url: str | None, tmp_path: Path) -> Iterator[Runtime]:
    with ServerThread(make_settings(tmp_path / "data", database_url)) as server:
        assert server.running is not None
        yield server.running.runtime


@pytest.fixture
def athlete_id(runtime: Runtime) -> str:
    profile = AthleteProfile(display_name="R", time_zone="Europe/Oslo",
                             birth_date=dt.date(1975, 1, 1), sex=Sex.MALE)  # fmt: skip
    with runtime.database.transaction() as session:
        return AthleteRepository(session).add(profile, None).id


def _run(
    runtime: Runtime,
    athlete_id: str,
    external_id: str,
    start: dt.datetime,
    speed: float,
    meters: float,
    sport: str = "Run",
    samples: bool = True,
) -> str:
    """A run at a constant `speed` (m/s) sampled every second."""
    seconds = int(meters / speed)
    points = [
        Sample(time=start + dt.timedelta(seconds=t), distance_meters=t * speed)
        for t in range(seconds + 1)
    ]
    measurements = Measurements(start_time=start, elapsed=dt.timedelta(seconds=seconds),
                                time_zone="Europe/Oslo", distance_meters=meters)  # fmt: skip
    activity, _, _ = runtime.strava_activities.write(
        athlete_id, external_id, ActivityEdit(title="run", sport_type=sport), measurements,
        {"id": external_id}, points if samples else None, None,
    )  # fmt: skip
    return activity.id


def _records(runtime: Runtime, athlete_id: str, **filters: object) -> list[PersonalRecord]:
    options: dict[str, object] = {
        "per_year": False,
        "year": None,
        "distances": (),
        "sport_types": (),
        "page_size": 100,
        "page_token": "",
    }
    options.update(filters)
    page, _ = runtime.records.list_page(athlete_id, **options)  # type: ignore[arg-type]
    return list(page)


def test_the_fastest_effort_per_distance_is_the_record_with_its_age_grade(
    runtime: Runtime, athlete_id: str
) -> None:
    slow = _run(runtime, athlete_id, "1", dt.datetime(2024, 5, 1, 6, tzinfo=dt.UTC), 3.0, 10_500)
    fast = _run(runtime, athlete_id, "2", dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC), 4.0, 5_200)
    records = {r.best.distance: r for r in _records(runtime, athlete_id)}
    assert set(records) == {Distance.FOUR_HUNDRED_M, Distance.ONE_K, Distance.ONE_MILE,
                            Distance.FIVE_K, Distance.TEN_K}  # fmt: skip
    five = records[Distance.FIVE_K]
    assert five.best.activity_id == fast
    assert five.best.elapsed_seconds == pytest.approx(1250.0, abs=1e-6)  # 5000 / 4
    assert five.record_id == "5k-all"
    assert five.age == 50  # on 1 May 2025
    assert five.grade is not None
    assert str(five.grade.factor) == "0.8775"  # published: M, 50, 5K
    assert records[Distance.TEN_K].best.activity_id == slow  # only the slow one is that long
    assert records[Distance.FOUR_HUNDRED_M].grade is None  # below the mile: no grade

    per_year = _records(runtime, athlete_id, per_year=True)
    keys = [(r.year, r.best.distance) for r in per_year]
    assert keys[:4] == [(2025, Distance.FOUR_HUNDRED_M), (2025, Distance.ONE_K),
                        (2025, Distance.ONE_MILE), (2025, Distance.FIVE_K)]  # fmt: skip
    assert (2024, Distance.TEN_K) in keys
    only_2024 = _records(runtime, athlete_id, per_year=True, year=2024)
    assert {r.year for r in only_2024} == {2024}


def test_records_page_in_order_and_tokens_bind_the_filters(
    runtime: Runtime, athlete_id: str
) -> None:
    _run(runtime, athlete_id, "1", dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC), 4.0, 5_200)
    seen: list[Distance] = []
    token = ""
    while True:
        page, token = runtime.records.list_page(
            athlete_id, per_year=False, year=None, distances=(), sport_types=(),
            page_size=2, page_token=token,
        )  # fmt: skip
        seen += [r.best.distance for r in page]
        if not token:
            break
    assert seen == [Distance.FOUR_HUNDRED_M, Distance.ONE_K, Distance.ONE_MILE, Distance.FIVE_K]
    _, token = runtime.records.list_page(athlete_id, per_year=False, year=None, distances=(),
                                         sport_types=(), page_size=2, page_token="")  # fmt: skip
    with pytest.raises(InvalidArgument):
        runtime.records.list_page(athlete_id, per_year=True, year=None, distances=(),
                                  sport_types=(), page_size=2, page_token=token)  # fmt: skip
    with pytest.raises(InvalidArgument):
        _records(runtime, athlete_id, year=2025)  # a year needs per-year records


def test_best_efforts_follow_the_samples_and_the_sport(runtime: Runtime, athlete_id: str) -> None:
    start = dt.datetime(2025, 5, 1, 6, tzinfo=dt.UTC)
    _run(runtime, athlete_id, "1", start, 4.0, 5_200)
    assert len(_records(runtime, athlete_id)) == 4
    # Edited on the source without new samples: still a run, the efforts stay.
    _run(runtime, athlete_id, "1", start, 4.0, 5_200, samples=False)
    assert len(_records(runtime, athlete_id)) == 4
    # Now it says it was a ride: no records from it.
    _run(runtime, athlete_id, "1", start, 4.0, 5_200, sport="Ride", samples=False)
    assert _records(runtime, athlete_id) == []
    # A run again: the stored samples give its efforts back.
    _run(runtime, athlete_id, "1", start, 4.0, 5_200, samples=False)
    assert len(_records(runtime, athlete_id)) == 4

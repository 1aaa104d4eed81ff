"""Seeds the fairness benchmark's database with the code of the server under test.

Run as a script (`python bench/fairness_seed.py URL ACTIVITIES SAMPLES`) with that
checkout on PYTHONPATH, so the schema and rows are the ones that server expects; only the
repository calls shared by every version since the first release are used. Prints one JSON
line: {"a": athlete id, "a_activities": [...], "b": athlete id, "b_activity": id}.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from sqlalchemy.orm import Session

from domain.activities import ActivityEdit, Measurements, Sample, Source
from domain.athletes import AthleteProfile
from storage import migrate
from storage.database import Database, PoolOptions
from storage.repositories.activities import ActivityRepository, SampleRepository
from storage.repositories.athletes import AthleteRepository

START = dt.datetime(2024, 5, 1, 7, 0, tzinfo=dt.UTC)


def _samples(count: int) -> list[Sample]:
    return [
        Sample(
            time=START + dt.timedelta(seconds=i),
            distance_meters=3.0 * i,
            latitude=52.5 + i * 1e-5,
            longitude=13.4,
            altitude_meters=34.0 + (i % 50) * 0.1,
            heart_rate_bpm=120 + i % 40,
            cadence_rpm=85,
            power_watts=200 + i % 30,
            speed_meters_per_second=3.0,
        )
        for i in range(count)
    ]


def _activity(session: Session, athlete_id: str, title: str, samples: list[Sample]) -> str:
    activity = ActivityRepository(session).add(
        athlete_id,
        ActivityEdit(title=title, sport_type="Run"),
        Measurements(start_time=START, elapsed=dt.timedelta(seconds=max(1, len(samples)))),
        source=Source.FILE,
        external_id=f"bench-{title}.fit",
    )
    SampleRepository(session).replace(activity.id, samples)
    return activity.id


def seed(url: str, activities: int, samples: int) -> dict[str, object]:
    database = Database(url, [], PoolOptions(size=1, max_overflow=0))
    migrate.upgrade(database.primary)
    heavy = _samples(samples)
    with database.transaction() as session:
        athletes = AthleteRepository(session)
        a = athletes.add(AthleteProfile(display_name="Streamer", time_zone="Europe/Oslo"), None)
        b = athletes.add(AthleteProfile(display_name="Reader", time_zone="Europe/Oslo"), None)
    a_activities = []
    for i in range(activities):
        with database.transaction() as session:
            a_activities.append(_activity(session, a.id, f"long-{i}", heavy))
    with database.transaction() as session:
        b_activity = _activity(session, b.id, "short", _samples(60))
    database.dispose()
    return {"a": a.id, "a_activities": a_activities, "b": b.id, "b_activity": b_activity}


if __name__ == "__main__":
    url, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(seed(url, count, size)))

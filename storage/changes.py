"""Which athletes' data a unit of work changed, announced once it commits.

Every repository method that writes an athlete's data (their profile, activities, samples'
summaries, best efforts, Strava connection) calls `touch` with the athlete's id. When the
unit of work commits, `Database.transaction` hands the ids to its commit listeners: the
read cache's data versions (storage.dataversions), so no read that starts after the
commit is answered from a copy made before it. A rolled-back unit announces nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

TOUCHED = "stride.touched_athletes"


def touch(session: Session, athlete_id: str) -> None:
    touched: set[str] = session.info.setdefault(TOUCHED, set())
    touched.add(athlete_id)


def touched(session: Session) -> set[str]:
    """The athletes touched so far (and forgets them: they are announced once)."""
    found: set[str] = session.info.pop(TOUCHED, set())
    return found

"""domain.periods: widening to ISO weeks and months, and the UTC offsets SQLite buckets with."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from domain.periods import (
    Period,
    local_midnight,
    offset_segments,
    period_end,
    period_start,
    period_starts,
    periods_before,
)


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    sunday = dt.date(2025, 3, 30)
    assert period_start(sunday, Period.WEEK) == dt.date(2025, 3, 24)
    assert period_end(sunday, Period.WEEK) == sunday
    assert period_end(dt.date(2024, 2, 10), Period.MONTH) == dt.date(2024, 2, 29)
    assert period_end(dt.date(2025, 12, 3), Period.MONTH) == dt.date(2025, 12, 31)
    assert periods_before(dt.date(2025, 2, 1), 11, Period.MONTH) == dt.date(2024, 3, 1)
    assert periods_before(dt.date(2025, 3, 24), 11, Period.WEEK) == dt.date(2025, 1, 6)
    assert period_starts(dt.date(2025, 1, 15), dt.date(2025, 3, 1), Period.MONTH) == [
        dt.date(2025, 1, 1),
        dt.date(2025, 2, 1),
        dt.date(2025, 3, 1),
    ]


def test_offset_segments_find_each_change_to_the_second() -> None:
    oslo = ZoneInfo("Europe/Oslo")
    start = local_midnight(dt.date(2025, 1, 1), oslo)
    end = local_midnight(dt.date(2026, 1, 1), oslo)
    assert offset_segments(oslo, start, end) == [
        (dt.datetime(2025, 3, 30, 1, 0, tzinfo=dt.UTC), 3600),
        (dt.datetime(2025, 10, 26, 1, 0, tzinfo=dt.UTC), 7200),
        (None, 3600),
    ]
    utc = ZoneInfo("UTC")
    assert offset_segments(utc, start, end) == [(None, 0)]


def test_a_skipped_midnight_begins_the_day_at_the_change() -> None:
    # America/Santiago skipped 2024-09-08 00:00 (to 01:00): the day begins at 04:00 UTC.
    santiago = ZoneInfo("America/Santiago")
    begins = local_midnight(dt.date(2024, 9, 8), santiago)
    assert begins == dt.datetime(2024, 9, 8, 4, 0, tzinfo=dt.UTC)
    assert begins.astimezone(santiago).date() == dt.date(2024, 9, 8)

"""Calendar periods (ISO weeks, months) and local days in a time zone, for the training
summary and the fitness trend (see AnalyticsService in analytics.proto)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from zoneinfo import ZoneInfo

# The longest range a request may ask for, both ends included.
MAX_RANGE_DAYS = 3660
# How many periods a summary covers when no start date is given.
DEFAULT_PERIODS = 12
# How many days a fitness trend covers when no start date is given.
DEFAULT_TREND_DAYS = 90
# Instants are compared in steps of this size when looking for offset changes (no time
# zone changes its offset twice within six hours).
_SCAN_STEP = dt.timedelta(hours=6)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def period_start(day: dt.date, period: Period) -> dt.date:
    """The first day of the period holding `day` (ISO weeks start on Monday)."""
    if period is Period.WEEK:
        return day - dt.timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return day


def next_period_start(start: dt.date, period: Period) -> dt.date:
    """The first day of the period after the one starting on `start` (OverflowError past
    9999-12-31)."""
    if period is Period.WEEK:
        return start + dt.timedelta(days=7)
    if period is Period.MONTH:
        if start.month == 12:
            return dt.date(start.year + 1, 1, 1)
        return dt.date(start.year, start.month + 1, 1)
    return start + dt.timedelta(days=1)


def period_end(day: dt.date, period: Period) -> dt.date:
    """The last day of the period holding `day` (OverflowError past 9999-12-31)."""
    return next_period_start(period_start(day, period), period) - dt.timedelta(days=1)


def periods_before(start: dt.date, count: int, period: Period) -> dt.date:
    """The first day of the period `count` periods before the one starting on `start`."""
    if period is Period.MONTH:
        months = start.year * 12 + start.month - 1 - count
        return dt.date(months // 12, months % 12 + 1, 1)
    days = 7 if period is Period.WEEK else 1
    return start - dt.timedelta(days=days * count)


def period_starts(start: dt.date, end: dt.date, period: Period) -> list[dt.date]:
    """The first day of every period from the one holding `start` to the one holding
    `end`, oldest first."""
    starts: list[dt.date] = []
    current = period_start(start, period)
    while current <= end:
        starts.append(current)
        try:
            current = next_period_start(current, period)
        except (OverflowError, ValueError):
            break
    return starts


def local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant a local day begins (for a midnight skipped by a clock change, the
    instant of the change), clamped to the datetimes Python can hold."""
    try:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    except OverflowError:
        limit = dt.datetime.min if day.year == 1 else dt.datetime.max
        return limit.replace(tzinfo=dt.UTC)


def utc_offset(zone: ZoneInfo, instant: dt.datetime) -> int:
    """Seconds `zone` is ahead of UTC at `instant`."""
    offset = instant.astimezone(zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


def offset_segments(
    zone: ZoneInfo, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime | None, int]]:
    """The zone's UTC offsets over [start, end): (until, offset seconds) pairs, oldest
    first, each offset holding for instants before `until` (and after the previous pair's);
    the last pair's `until` is None. Transition instants are found to the second."""
    segments: list[tuple[dt.datetime | None, int]] = []
    current = utc_offset(zone, start)
    at = start
    while at < end:
        step = min(at + _SCAN_STEP, end)
        if utc_offset(zone, step) != current:
            # The first second with another offset: offset(low) is current, offset(high) not.
            low, high = int(at.timestamp()), int(step.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                moment = dt.datetime.fromtimestamp(middle, dt.UTC)
                if utc_offset(zone, moment) == current:
                    low = middle
                else:
                    high = middle
            change = dt.datetime.fromtimestamp(high, dt.UTC)
            segments.append((change, current))
            current = utc_offset(zone, change)
        at = step
    segments.append((None, current))
    return segments

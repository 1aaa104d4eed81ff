"""Parameter types for people: dates, sports, distances and times as one would type them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click
from stride.v1 import common_pb2

from cli.output import enum_names

DISTANCES = {
    "400m": 400.0,
    "1k": 1000.0,
    "mile": 1609.344,
    "5k": 5000.0,
    "10k": 10000.0,
    "15k": 15000.0,
    "10mile": 16093.44,
    "half": 21097.5,
    "half-marathon": 21097.5,
    "30k": 30000.0,
    "marathon": 42195.0,
}


class DateOrTime(click.ParamType[Any]):
    """`2026-11-01` or an ISO 8601 time; without an offset it is this machine's local time."""

    name = "DATE"

    def __init__(self, end_of_day: bool = False) -> None:
        # An upper bound given as a bare date includes that whole day.
        self.end_of_day = end_of_day

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date (YYYY-MM-DD) or ISO 8601 time", param, ctx)
        if self.end_of_day and len(text) == 10:
            parsed += dt.timedelta(days=1)
        return parsed if parsed.tzinfo else parsed.astimezone()


class Day(click.ParamType[Any]):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a date of the form YYYY-MM-DD", param, ctx)


class Sport(click.ParamType[Any]):
    """`run`, `trail-run`, `RUN` or `SPORT_TYPE_RUN`."""

    name = "SPORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        key = re.sub(r"[\s-]+", "_", str(value).strip()).upper().removeprefix("SPORT_TYPE_")
        try:
            number = common_pb2.SportType.Value(f"SPORT_TYPE_{key}")
        except ValueError:
            names = ", ".join(
                n.removeprefix("SPORT_TYPE_").lower().replace("_", "-")
                for n in enum_names(common_pb2.SportType.DESCRIPTOR)
            )
            self.fail(f"unknown sport {value!r}; one of: {names}", param, ctx)
        if number == common_pb2.SPORT_TYPE_UNSPECIFIED:
            self.fail("a sport is required", param, ctx)
        return number


class Distance(click.ParamType[Any]):
    """`5k`, `10km`, `half`, `marathon`, `mile`, `3.1mi`, `800m`, or metres."""

    name = "DISTANCE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower().replace(" ", "")
        if text in DISTANCES:
            return DISTANCES[text]
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|km|mi|miles?)?", text)
        if not match:
            self.fail(
                f"{value!r} is not a distance (5k, 10km, half, marathon, 3.1mi, 800m)",
                param,
                ctx,
            )
        amount, unit = float(match.group(1)), match.group(2) or "m"
        factor = {"m": 1.0, "k": 1000.0, "km": 1000.0}.get(unit, 1609.344)
        meters = amount * factor
        if meters <= 0:
            self.fail("the distance must be positive", param, ctx)
        return meters


class Time(click.ParamType[Any]):
    """`45:00`, `1:02:03`, `2700s` or seconds."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower().removesuffix("s")
        try:
            parts = [float(part) for part in text.split(":")]
        except ValueError:
            self.fail(f"{value!r} is not a time (H:MM:SS, MM:SS or seconds)", param, ctx)
        if len(parts) > 3 or any(part < 0 for part in parts):
            self.fail(f"{value!r} is not a time (H:MM:SS, MM:SS or seconds)", param, ctx)
        total = 0.0
        for part in parts:
            total = total * 60 + part
        if total <= 0:
            self.fail("the time must be positive", param, ctx)
        return total


def sex_value(name: str) -> common_pb2.Sex.ValueType:
    return common_pb2.Sex.Value(f"SEX_{name.upper()}")


def local_time_zone() -> str:
    """This machine's IANA time zone name (TZ, else /etc/localtime's target), else UTC."""
    import os
    from pathlib import Path

    name = os.environ.get("TZ", "").lstrip(":")
    if name and "/" in name:
        return name
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"

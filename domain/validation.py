"""Field rules shared by every resource: text, numbers, time zones."""

from __future__ import annotations

import math
import zoneinfo
from functools import lru_cache

from domain.errors import Violations


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(value: str) -> bool:
    return value in _time_zones()


def check_text(
    violations: Violations, field: str, value: str, *, max_length: int, required: bool
) -> None:
    if not value.strip():
        if required:
            violations.add(field, "is required")
        return
    if len(value) > max_length:
        violations.add(field, f"must be at most {max_length} characters")
    if "\x00" in value:
        violations.add(field, "must not contain NUL characters")


def check_time_zone(violations: Violations, field: str, value: str, *, required: bool) -> None:
    if not value:
        if required:
            violations.add(field, "is required")
    elif not is_time_zone(value):
        violations.add(field, "must be an IANA time zone such as Europe/Paris")


def check_number(
    violations: Violations,
    field: str,
    value: float | None,
    *,
    minimum: float,
    maximum: float,
    unit: str = "",
) -> None:
    if value is None:
        return
    if not math.isfinite(value) or not minimum <= value <= maximum:
        suffix = f" {unit}" if unit else ""
        violations.add(field, f"must be between {minimum:g} and {maximum:g}{suffix}")


def check_request_id(violations: Violations, field: str, value: str) -> None:
    if len(value) > 64 or not all(c.isalnum() or c in "-_" for c in value):
        violations.add(field, "must be at most 64 letters, digits, '-' or '_' (a UUID)")

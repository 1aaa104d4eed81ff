"""Field rules shared by every resource: text, numbers, time zones."""

from __future__ import annotations

import math
import string
import zoneinfo
from functools import lru_cache

from domain.errors import Violations

# What a system's zoneinfo directory holds besides IANA names: the machine's own zone,
# the POSIX-rules template, "Factory" (no zone at all), and copies of the database with
# other conventions (right/ counts leap seconds, which civil time never does).
_NOT_IANA_NAMES = frozenset({"localtime", "posixrules", "Factory"})
_NOT_IANA_PREFIXES = ("posix/", "right/")


def is_iana_name(name: str) -> bool:
    """A time zone name clients may store: an identifier of the IANA tz database, such as
    `Europe/Paris` (Area/Location), `UTC`, or a backward-compatible link such as `US/Eastern`;
    never a system file such as `localtime`, `posixrules`, `Factory`, `posix/...` or `right/...`.
    """
    return name not in _NOT_IANA_NAMES and not name.startswith(_NOT_IANA_PREFIXES)


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(name for name in zoneinfo.available_timezones() if is_iana_name(name))


def is_time_zone(value: str) -> bool:
    """An IANA time zone known to this machine's tz database (see `is_iana_name`)."""
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


_REQUEST_ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_")


def check_request_id(violations: Violations, field: str, value: str) -> None:
    """ASCII only: `str.isalnum` would also let in letters and digits such as 'é' or '٣'."""
    if len(value) > 64 or not _REQUEST_ID_CHARACTERS.issuperset(value):
        violations.add(field, "must be at most 64 ASCII letters, digits, '-' or '_' (a UUID)")

"""Resource names (AIP-122): parsing and formatting, with violations that name the field."""

from __future__ import annotations

import re

from domain.errors import InvalidArgument, Violations

_ID = r"[a-z0-9][a-z0-9-]{0,62}"
_ATHLETE = re.compile(rf"athletes/({_ID})")
_ACCESS_TOKEN = re.compile(rf"athletes/({_ID})/accessTokens/({_ID})")
_ACTIVITY = re.compile(rf"athletes/({_ID})/activities/({_ID})")
_JOB = re.compile(rf"athletes/({_ID})/jobs/({_ID})")


def athlete_name(athlete_id: str) -> str:
    return f"athletes/{athlete_id}"


def activity_name(athlete_id: str, activity_id: str) -> str:
    return f"athletes/{athlete_id}/activities/{activity_id}"


def job_name(athlete_id: str, job_id: str) -> str:
    return f"athletes/{athlete_id}/jobs/{job_id}"


def parse_job(name: str, field: str, violations: Violations | None = None) -> tuple[str, str]:
    """(athlete id, job id) in `athletes/{athlete}/jobs/{job}`."""
    match = _JOB.fullmatch(name)
    if match:
        return match.group(1), match.group(2)
    _reject(name, field, "athletes/{athlete}/jobs/{job}", violations)
    return "", ""


def access_token_name(athlete_id: str, token_id: str) -> str:
    return f"athletes/{athlete_id}/accessTokens/{token_id}"


def parse_access_token(name: str, field: str) -> tuple[str, str]:
    """(athlete id, token id) in `athletes/{athlete}/accessTokens/{access_token}`."""
    match = _ACCESS_TOKEN.fullmatch(name)
    if match:
        return match.group(1), match.group(2)
    _reject(name, field, "athletes/{athlete}/accessTokens/{access_token}", None)
    return "", ""


def parse_athlete(name: str, field: str, violations: Violations | None = None) -> str:
    """The athlete id in `athletes/{athlete}`."""
    match = _ATHLETE.fullmatch(name)
    if match:
        return match.group(1)
    _reject(name, field, "athletes/{athlete}", violations)
    return ""


def parse_singleton(name: str, field: str, singleton: str) -> str:
    """The athlete id in `athletes/{athlete}/{singleton}` (such as `trainingSummary`)."""
    athlete, _, rest = name.rpartition("/")
    match = _ATHLETE.fullmatch(athlete)
    if match and rest == singleton:
        return match.group(1)
    _reject(name, field, f"athletes/{{athlete}}/{singleton}", None)
    return ""


def parse_activity(name: str, field: str, violations: Violations | None = None) -> tuple[str, str]:
    """(athlete id, activity id) in `athletes/{athlete}/activities/{activity}`."""
    match = _ACTIVITY.fullmatch(name)
    if match:
        return match.group(1), match.group(2)
    _reject(name, field, "athletes/{athlete}/activities/{activity}", violations)
    return "", ""


def _reject(name: str, field: str, pattern: str, violations: Violations | None) -> None:
    problem = "is required" if not name else f"must match {pattern}"
    target = violations if violations is not None else Violations()
    target.add(field, problem)
    if violations is None:
        raise InvalidArgument(target.items)

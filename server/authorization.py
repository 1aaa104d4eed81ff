"""Who may call what: every stride.v1 method is classified here (a test checks coverage).

* PUBLIC: no credentials (Strava's webhook calls, which carry their own verify token).
* ADMIN: the admin token only.
* AUTHENTICATED: any valid token.
* athlete-scoped: the athlete named by a request field; an athlete token reaches only its own.
  `athletes/-` (every athlete, AIP-159: ListJobs across athletes) is for the admin token only.

Athletes get PERMISSION_DENIED for other athletes' resources whether or not they exist
(permission is checked before existence, AIP-193), so existence never leaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from domain.errors import PermissionDenied
from server.principal import Principal

PUBLIC = "public"
ADMIN = "admin"
AUTHENTICATED = "authenticated"

_ATHLETE = re.compile(r"athletes/([^/]+)(?:/.*)?")
EVERY_ATHLETE = "-"  # the AIP-159 wildcard: `athletes/-`


def _age_grade_subject(request: Any) -> str | None:
    """AgeGrade names an athlete only through an activity or an athlete performance; an
    explicit age and sex concerns nobody (None: any authenticated caller)."""
    subject = request.WhichOneof("subject")
    if subject == "activity":
        return str(request.activity)
    if subject == "athlete_performance":
        return str(request.athlete_performance.athlete)
    return None


def _field(path: str) -> Callable[[Any], str]:
    def read(request: Any) -> str:
        value = request
        for part in path.split("."):
            value = getattr(value, part)
        return str(value)

    return read


# Method -> PUBLIC / ADMIN / AUTHENTICATED, or the request field naming the athlete.
POLICY: dict[str, str | Callable[[Any], str | None]] = {
    "/stride.v1.AthleteService/CreateAthlete": ADMIN,
    "/stride.v1.AthleteService/ListAthletes": ADMIN,
    "/stride.v1.AthleteService/GetAthlete": _field("name"),
    "/stride.v1.AthleteService/UpdateAthlete": _field("athlete.name"),
    "/stride.v1.AthleteService/DeleteAthlete": _field("name"),
    "/stride.v1.AthleteService/CreateAccessToken": _field("parent"),
    "/stride.v1.AthleteService/ListAccessTokens": _field("parent"),
    "/stride.v1.AthleteService/DeleteAccessToken": _field("name"),
    "/stride.v1.ActivityService/CreateActivity": _field("parent"),
    "/stride.v1.ActivityService/GetActivity": _field("name"),
    "/stride.v1.ActivityService/UpdateActivity": _field("activity.name"),
    "/stride.v1.ActivityService/DeleteActivity": _field("name"),
    "/stride.v1.ActivityService/ListActivities": _field("parent"),
    "/stride.v1.ActivityService/StreamActivitySamples": _field("name"),
    # Client streaming: checked on the first message, which carries the header.
    "/stride.v1.ActivityService/UploadActivityFile": _field("header.parent"),
    "/stride.v1.ActivityService/UploadActivityFileBody": _field("parent"),
    # AgeGrade's subject is a oneof: the athlete of `activity` or `athlete_performance`;
    # an explicit age and sex needs none (any token).
    "/stride.v1.AnalyticsService/AgeGrade": _age_grade_subject,
    # `athletes/{athlete}/trainingSummary`, `athletes/{athlete}/fitnessTrend`
    "/stride.v1.AnalyticsService/GetTrainingSummary": _field("name"),
    "/stride.v1.AnalyticsService/ListPersonalRecords": _field("parent"),
    "/stride.v1.AnalyticsService/GetFitnessTrend": _field("name"),
    # `athletes/{athlete}/stravaConnection`
    "/stride.v1.SyncService/GetStravaConnection": _field("name"),
    "/stride.v1.SyncService/GetStravaAuthorizationUrl": _field("name"),
    "/stride.v1.SyncService/ConnectStrava": _field("name"),
    "/stride.v1.SyncService/DisconnectStrava": _field("name"),
    "/stride.v1.SyncService/StartSync": _field("name"),
    # Strava calls these with no credentials; the verify token and subscription id are
    # checked by the service.
    "/stride.v1.SyncService/VerifyStravaWebhook": PUBLIC,
    "/stride.v1.SyncService/HandleStravaWebhookEvent": PUBLIC,
    # `athletes/{athlete}/jobs/{job}`; ListJobs also takes `athletes/-` (admin only).
    "/stride.v1.JobService/GetJob": _field("name"),
    "/stride.v1.JobService/ListJobs": _field("parent"),
    "/stride.v1.JobService/CancelJob": _field("name"),
    "/stride.v1.JobService/WatchJob": _field("name"),
    "/stride.v1.AdminService/ListDeadLetters": ADMIN,
    "/stride.v1.AdminService/RetryDeadLetter": ADMIN,
    "/stride.v1.AdminService/DeleteDeadLetter": ADMIN,
    "/stride.v1.AdminService/GetRateLimitState": ADMIN,
    "/stride.v1.AdminService/FlushCache": ADMIN,
    "/stride.v1.AdminService/GetDependencyHealth": ADMIN,
}


def is_public(method: str) -> bool:
    return POLICY.get(method) == PUBLIC


def needs_request(method: str) -> bool:
    return callable(POLICY.get(method))


def authorize(principal: Principal, method: str, request: Any = None) -> None:
    """Raise PermissionDenied unless `principal` may call `method` with `request`."""
    rule = POLICY.get(method, ADMIN)  # an unlisted method is operator-only
    if principal.is_admin or rule in (PUBLIC, AUTHENTICATED):
        return
    if rule == ADMIN:
        raise PermissionDenied(f"{method} needs the admin token", reason="ADMIN_ONLY")
    assert callable(rule)
    named = rule(request) if request is not None else ""
    if named is None:  # the request concerns no athlete (AgeGrade with an age and sex)
        return
    match = _ATHLETE.fullmatch(named)
    if match is not None and match.group(1) == EVERY_ATHLETE:
        raise PermissionDenied(
            "athletes/- (every athlete) needs the admin token", reason="ADMIN_ONLY"
        )
    if match is None or match.group(1) != principal.athlete_id:
        raise PermissionDenied(
            f"{principal.label} may not act on this resource", reason="NOT_YOUR_RESOURCE"
        )

"""What every Strava job needs from the runtime: the client, the athlete's tokens, where
activities are written. One lookup, so runners stay about their own work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.jobs import JobFailure
from tasks.queue import current_queue

if TYPE_CHECKING:
    from runtime import Runtime
    from services.activities import ExternalActivities
    from services.jobs import JobStore
    from tasks.strava.client import StravaClient
    from tasks.strava.tokens import AccessTokens


@dataclass(frozen=True)
class StravaWork:
    runtime: Runtime
    client: StravaClient
    tokens: AccessTokens
    activities: ExternalActivities
    jobs: JobStore
    page_size: int


def strava_work() -> StravaWork:
    runtime: Runtime | None = current_queue().resources
    if runtime is None or runtime.strava is None or runtime.strava_tokens is None:
        raise JobFailure(
            "FAILED_PRECONDITION",
            "STRAVA_NOT_CONFIGURED",
            "this worker has no Strava application configured (STRIDE_STRAVA_CLIENT_ID)",
        )
    return StravaWork(
        runtime=runtime,
        client=runtime.strava,
        tokens=runtime.strava_tokens,
        activities=runtime.strava_activities,
        jobs=runtime.job_store,
        page_size=runtime.settings.strava_page_size,
    )

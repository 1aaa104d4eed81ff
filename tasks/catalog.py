"""Every task Stride declares. `make_huey` installs these on the queue; a task module that is
not listed here is unknown to the workers."""

from __future__ import annotations

from typing import Any

from tasks.declare import TaskRef
from tasks.diagnostics import ping
from tasks.imports import sweep_staging
from tasks.jobs import prune_job_events, run_job, sweep_leases
from tasks.recompute import recompute_stale
from tasks.strava import connection, sync  # noqa: F401 (they register their job runners)
from tasks.strava.schedule import strava_housekeeping

ALL: tuple[TaskRef[..., Any], ...] = (
    ping,
    run_job,
    sweep_leases,
    prune_job_events,
    strava_housekeeping,
    recompute_stale,
    sweep_staging,
)

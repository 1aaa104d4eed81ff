"""The RECOMPUTE job: brings an athlete's derived values (training load, best efforts) up
to date, a page of activities at a time with a checkpoint after each, so a worker that
dies or stops resumes where it was. Started by a profile change that weighs on them
(runtime.recompute_derived) and, for athletes whose values reflect an older version of
the algorithms (domain.derived.VERSION), by the periodic `recompute_stale`."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from domain.jobs import JobFailure, JobKind, Progress
from tasks.declare import periodic
from tasks.jobs import JobRun, register
from tasks.queue import current_queue

if TYPE_CHECKING:
    from runtime import Runtime

PAGE = 100
STALE_EVERY = dt.timedelta(minutes=10)
STALE_BATCH = 50


def run_recompute(run: JobRun) -> dict[str, Any]:
    runtime: Runtime | None = current_queue().resources
    if runtime is None:
        raise JobFailure("FAILED_PRECONDITION", "NO_RUNTIME", "this queue has no runtime")
    athlete_id = run.job.athlete_id or ""
    checkpoint = run.job.checkpoint or {}
    done = int(checkpoint.get("done", 0))
    after = _position(checkpoint.get("after"))
    # The version the values were at when this job began: a profile change after that
    # moves it, and the job then does not mark them current (another recompute follows).
    expected = int(checkpoint.get("expected", runtime.derived.version_of(athlete_id)))
    while True:
        run.check({"updated": done})
        count, after = runtime.derived.recompute_page(athlete_id, after, PAGE)
        if not count:
            break
        done += count
        position = None if after is None else [after[0].isoformat(), after[1]]
        run.progress(Progress(completed=done),
                     checkpoint={"after": position, "done": done, "expected": expected},
                     result={"updated": done})  # fmt: skip
    runtime.derived.mark_current(athlete_id, expected)
    return {"updated": done}


@periodic(STALE_EVERY)
def recompute_stale() -> int:
    """A RECOMPUTE job for each athlete (a batch per slot) whose derived values reflect an
    older version of the algorithms, unless one is already on its way; how many started."""
    runtime: Runtime | None = current_queue().resources
    if runtime is None:
        return 0
    started = 0
    for athlete_id in runtime.derived.stale(STALE_BATCH):
        job, created = runtime.job_store.create(
            athlete_id, JobKind.RECOMPUTE, {"scheduled": True}, exclusive=(JobKind.RECOMPUTE,)
        )
        if created:
            runtime.launch_job(job)
            started += 1
    return started


def _position(value: Any) -> tuple[dt.datetime, str] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    return dt.datetime.fromisoformat(str(value[0])), str(value[1])


register(JobKind.RECOMPUTE, run_recompute)

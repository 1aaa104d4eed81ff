"""The RECOMPUTE job: brings an athlete's derived values (training load, best efforts) up
to date, a page of activities at a time with a checkpoint after each, so a worker that
dies or stops resumes where it was."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from domain.jobs import JobFailure, JobKind, Progress
from tasks.jobs import JobRun, register
from tasks.queue import current_queue

if TYPE_CHECKING:
    from runtime import Runtime

PAGE = 100


def run_recompute(run: JobRun) -> dict[str, Any]:
    runtime: Runtime | None = current_queue().resources
    if runtime is None:
        raise JobFailure("FAILED_PRECONDITION", "NO_RUNTIME", "this queue has no runtime")
    athlete_id = run.job.athlete_id or ""
    checkpoint = run.job.checkpoint or {}
    done = int(checkpoint.get("done", 0))
    after = _position(checkpoint.get("after"))
    while True:
        run.check({"updated": done})
        count, after = runtime.derived.recompute_page(athlete_id, after, PAGE)
        if not count:
            break
        done += count
        position = None if after is None else [after[0].isoformat(), after[1]]
        run.progress(Progress(completed=done), checkpoint={"after": position, "done": done},
                     result={"updated": done})  # fmt: skip
    return {"updated": done}


def _position(value: Any) -> tuple[dt.datetime, str] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    return dt.datetime.fromisoformat(str(value[0])), str(value[1])


register(JobKind.RECOMPUTE, run_recompute)

"""Dead letters: tasks that failed for good, stored with what it takes to run them again.

`record` is the queue's final-failure hook (`StrideHuey.on_final_failure`): it stores the
task's name, arguments, error, attempts, request id and trace id, and when the task ran a
job, ends the job FAILED with the error (an event). AdminService lists, retries and drops
them: a retry enqueues the same task with the same arguments (a job goes back to QUEUED
first, with an event) and removes the letter once enqueued.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from typing import Any, Protocol

import structlog

from domain.errors import FailedPrecondition, NotFound, Violations
from domain.jobs import DeadLetter
from services.jobs import JobStore
from services.paging import Paging

log = structlog.get_logger(__name__)
_NAME = re.compile(r"deadLetters/([a-z0-9][a-z0-9-]{0,62})")


def dead_letter_name(dead_letter_id: str) -> str:
    return f"deadLetters/{dead_letter_id}"


def parse_dead_letter(name: str, field: str) -> str:
    """The id in `deadLetters/{dead_letter}` (InvalidArgument otherwise)."""
    match = _NAME.fullmatch(name)
    if match:
        return match.group(1)
    violations = Violations()
    violations.add(field, "must be a resource name like deadLetters/{dead_letter}")
    violations.raise_if_any()
    return ""


class TaskQueue(Protocol):
    def submit_named(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any: ...


class Failure(Protocol):
    """What the queue reports for a task that failed for good (tasks.queue.FinalFailure)."""

    @property
    def task_name(self) -> str: ...
    @property
    def args(self) -> list[Any]: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...
    @property
    def error_type(self) -> str: ...
    @property
    def error_message(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def request_id(self) -> str: ...
    @property
    def trace_id(self) -> str: ...


class DeadLetterService:
    def __init__(
        self,
        store: JobStore,
        queue: TaskQueue,
        job_tasks: Collection[str],
        paging: Paging | None = None,
    ) -> None:
        """`paging` only for `list_page` (a worker records letters without a signing key)."""
        self.store = store
        self.queue = queue
        self._paging = paging
        # Tasks whose first argument is the id of the job they run.
        self.job_tasks = frozenset(job_tasks)

    def _job_of(self, task_name: str, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        if task_name not in self.job_tasks:
            return None
        job_id = args[0] if args else kwargs.get("job_id")
        return job_id if isinstance(job_id, str) else None

    def record(self, failure: Failure) -> DeadLetter:
        """Store the dead letter, then fail its job (if any) with the error."""
        error = {"type": failure.error_type, "message": failure.error_message}
        job_id = self._job_of(failure.task_name, failure.args, failure.kwargs)
        if job_id is not None and not self._job_exists(job_id):
            job_id = None
        letter = self.store.add_dead_letter(
            failure.task_name,
            job_id,
            {"args": list(failure.args), "kwargs": dict(failure.kwargs)},
            error,
            failure.attempts,
            request_id=failure.request_id,
            trace_id=failure.trace_id,
        )
        if job_id is not None:
            self.store.fail(job_id, error, message=f"{failure.error_type}: {failure.error_message}")
        log.error("task dead-lettered", dead_letter=letter.id, task=letter.task_name,
                  job_id=job_id, attempts=letter.attempts)  # fmt: skip
        return letter

    def _job_exists(self, job_id: str) -> bool:
        try:
            self.store.get(job_id)
        except NotFound:
            return False
        return True

    @property
    def paging(self) -> Paging:
        if self._paging is None:
            raise RuntimeError("DeadLetterService built without paging")
        return self._paging

    def list_page(self, page_size: int, page_token: str) -> tuple[list[DeadLetter], str]:
        """Newest first."""
        violations = Violations()
        size = self.paging.size(page_size, violations)
        violations.raise_if_any()
        query = "deadLetters"
        after = self.paging.time_key(page_token, query)
        rows = self.store.list_dead_letters(after, size + 1)
        token = self.paging.next_token(query, rows, size, lambda d: (d.create_time, d.id))
        return rows[:size], token

    def get(self, dead_letter_id: str) -> DeadLetter:
        return self.store.get_dead_letter(dead_letter_id)

    def retry(self, dead_letter_id: str) -> None:
        """Enqueue the task again with its arguments (its job back to QUEUED first, an
        event), then drop the letter. NotFound for an unknown letter; FailedPrecondition
        (JOB_NOT_FAILED) when its job is no longer FAILED."""
        letter = self.store.get_dead_letter(dead_letter_id)
        if letter.job_id is not None and self._job_exists(letter.job_id):
            self.store.reopen(letter.job_id, "retried from dead letter")
        args = letter.args.get("args", [])
        kwargs = letter.args.get("kwargs", {})
        try:
            self.queue.submit_named(letter.task_name, list(args), dict(kwargs))
        except LookupError as exc:  # a task this version no longer has
            raise FailedPrecondition(str(exc), reason="TASK_UNKNOWN") from exc
        with contextlib.suppress(NotFound):  # a concurrent retry or delete got there first
            self.store.delete_dead_letter(dead_letter_id)
        log.info("dead letter retried", dead_letter=dead_letter_id, task=letter.task_name)

    def delete(self, dead_letter_id: str) -> None:
        self.store.delete_dead_letter(dead_letter_id)

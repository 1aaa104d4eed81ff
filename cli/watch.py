"""Following jobs live: `WatchJob` events, resumed after the last sequence when the stream
breaks, shown as a progress bar (a terminal), plain lines (a pipe) or JSON lines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from stride.v1 import job_pb2

from cli.errors import CallError, retry_delay, status_lines
from cli.output import Output, enum_label, to_dict

# A server restart, a dropped connection, a proxy in between going away.
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


class WatchStub(Protocol):
    """JobServiceStub, or a fake of it in tests."""

    @property
    def WatchJob(self) -> Callable[..., Iterable[job_pb2.JobEvent]]: ...  # noqa: N802


def job_events(
    stub: WatchStub,
    name: str,
    metadata: Sequence[tuple[str, str]] = (),
    after: int = 0,
    *,
    give_up_seconds: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    on_reconnect: Callable[[int, grpc.RpcError], None] | None = None,
) -> Iterator[job_pb2.JobEvent]:
    """Every event of job `name` after sequence `after`, once each, until the job ends.

    When the stream breaks with UNAVAILABLE (or RESOURCE_EXHAUSTED with a RetryInfo) the
    watch starts again with `after_sequence` set to the last sequence seen (the server
    replays only what came later; anything replayed twice all the same is dropped),
    backing off up to 5 s between attempts (or as long as RetryInfo says) and
    giving up after `give_up_seconds` without an event."""
    last = after
    failing_since: float | None = None
    delay = 0.25
    while True:
        try:
            stream = stub.WatchJob(
                job_pb2.WatchJobRequest(name=name, after_sequence=last), metadata=metadata
            )
            for event in stream:
                failing_since, delay = None, 0.25
                if not event.heartbeat:
                    if event.sequence <= last:
                        continue
                    last = event.sequence
                yield event
            return
        except grpc.RpcError as error:
            code = error.code() if callable(getattr(error, "code", None)) else None
            # Too many streams or a spent rate limit: wait as long as the server says.
            wait = retry_delay(error) if code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
            if code not in RECONNECT_CODES and wait is None:
                raise
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
            elif now - failing_since > give_up_seconds:
                raise
            if on_reconnect is not None:
                on_reconnect(last, error)
            sleep(max(delay, wait or 0.0))
            delay = min(delay * 2, 5.0)


@dataclass
class Outcome:
    """How a watched job ended (from its last event)."""

    name: str
    label: str
    state: int = job_pb2.JOB_STATE_UNSPECIFIED
    result: job_pb2.JobResult = field(default_factory=job_pb2.JobResult)
    error: Any = None
    failed_items: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == job_pb2.JOB_STATE_SUCCEEDED


def state_label(state: int) -> str:
    return enum_label(job_pb2.JobState.Name(state), "JOB_STATE_")  # type: ignore[arg-type]


def counts(result: job_pb2.JobResult) -> str:
    parts = [f"created {result.created}"]
    for key in ("updated", "unchanged", "skipped", "deleted"):
        value = getattr(result, key)
        if value:
            parts.append(f"{key} {value}")
    parts.append(f"failed {result.failed}")
    return ", ".join(parts)


class JobWatcher:
    """Shows the events of one or more jobs, one after the other, in one display."""

    def __init__(self, output: Output, stub: WatchStub, metadata: Sequence[tuple[str, str]]):
        self.output = output
        self.stub = stub
        self.metadata = metadata
        self.bar = not output.as_json and output.console.is_terminal
        self.progress: Progress | None = None

    def __enter__(self) -> JobWatcher:
        if self.bar:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[state]}"),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=self.output.console,
                refresh_per_second=8,
            )
            self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def say(self, text: str, style: str | None = None) -> None:
        """A line for people: above the bar, on stdout without one (stderr with --json)."""
        if self.output.as_json:
            self.output.notice(text)
        elif self.progress is not None:
            self.progress.console.print(text, style=style, markup=False)
        else:
            self.output.console.print(text, style=style, markup=False)

    def watch(self, name: str, label: str, after: int = 0) -> Outcome:
        outcome = Outcome(name=name, label=label)
        task: TaskID | None = None
        if self.progress is not None:
            task = self.progress.add_task(label, total=None, state="queued", counts="")
        last_line = ""

        def reconnecting(sequence: int, error: grpc.RpcError) -> None:
            found = CallError.of(error)
            self.say(
                f"{label}: {found.code} ({found.reason or found.message}); "
                f"reconnecting after event {sequence}",
                "yellow",
            )

        for event in job_events(self.stub, name, self.metadata, after, on_reconnect=reconnecting):
            outcome.state = event.state
            if event.HasField("result"):
                outcome.result.CopyFrom(event.result)
            if event.HasField("error"):
                outcome.error = event.error
            if event.HasField("item_error"):
                lines = status_lines(event.item_error)
                outcome.failed_items.append((event.item, lines))
                self.say(f"{label}: {event.item or 'item'} failed: {lines[0]}", "red")
                for line in lines[1:]:
                    self.say(line, "red")
            if self.output.as_json:
                if not event.heartbeat:
                    self.output.json_line({"job": name, "file": label, **to_dict(event)})
                continue
            progress = event.progress
            total = progress.total if progress.HasField("total") else None
            state = state_label(event.state)
            if self.progress is not None and task is not None:
                done = progress.done
                if event.state == job_pb2.JOB_STATE_SUCCEEDED and total is None:
                    total = done = max(done, 1)
                self.progress.update(
                    task,
                    total=total,
                    completed=done,
                    state=state,
                    counts=counts(outcome.result),
                )
            else:
                of = f"{progress.done}/{total}" if total is not None else f"{progress.done}"
                line = f"{label}: {state}, {of} done, {counts(outcome.result)}"
                if progress.message:
                    line += f" ({progress.message})"
                if line != last_line:
                    self.say(line)
                    last_line = line
        if outcome.error is not None and outcome.state != job_pb2.JOB_STATE_SUCCEEDED:
            lines = status_lines(outcome.error)
            self.say(f"{label}: job {state_label(outcome.state)}: {lines[0]}", "bold red")
            for line in lines[1:]:
                self.say(line, "red")
        return outcome

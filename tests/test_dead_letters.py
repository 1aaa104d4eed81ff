"""Dead letters: a task that fails for good is stored with its arguments, error, attempts,
request id and trace id (its job ends FAILED with an event); AdminService lists, retries and
drops them, for the admin token only. A real server with in-process workers, on PostgreSQL
and SQLite."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import structlog
from google.protobuf import json_format
from google.rpc import code_pb2
from stride.v1 import admin_pb2, admin_pb2_grpc, athlete_pb2, athlete_pb2_grpc

from domain.jobs import JobKind, JobState
from runtime import Runtime
from tasks import jobs as job_tasks
from tasks.declare import periodic, task
from tasks.jobs import JobRun, enqueue_job
from tasks.queue import PermanentFailure
from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings, reason

Stub = admin_pb2_grpc.AdminServiceStub
KIND = JobKind.RECOMPUTE  # its runner is replaced by the tests' own while they run

# What the test task and runner do: fail until their key is in SUCCEED.
SUCCEED: set[str] = set()
RAN: list[str] = []
PERIODIC_RUNS: list[str] = []
_lock = threading.Lock()


@task(retries=2, backoff=None, name="test_flaky")
def flaky(key: str, *, note: str = "") -> str:
    if key not in SUCCEED:
        raise ValueError(f"{key} is not allowed yet")
    with _lock:
        RAN.append(key)
    return key


@periodic(dt.timedelta(hours=1), name="test_periodic_broken")
def periodic_broken() -> None:
    with _lock:
        PERIODIC_RUNS.append("periodic")
    raise ValueError("broken housekeeping")


def _runner(run: JobRun) -> dict[str, Any]:
    if run.job.id not in SUCCEED:
        raise PermanentFailure("the file is corrupt")
    with _lock:
        RAN.append(run.job.id)
    return {"created": 1}


@pytest.fixture
def server(database_url: str | None, tmp_path: Path) -> Iterator[ServerThread]:
    SUCCEED.clear()
    RAN.clear()
    PERIODIC_RUNS.clear()
    with (
        job_tasks.runner_replaced(KIND, _runner),
        ServerThread(make_settings(tmp_path / "data", database_url)) as running,
    ):
        assert running.running is not None
        running.running.runtime.huey.install([flaky, periodic_broken])
        yield running


@pytest.fixture
def runtime(server: ServerThread) -> Runtime:
    assert server.running is not None
    return server.running.runtime


@pytest.fixture
def admin_channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        yield channel


@pytest.fixture
def admin(admin_channel: grpc.Channel) -> Stub:
    return Stub(admin_channel)


def _wait(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def _letters(admin: Stub) -> list[admin_pb2.DeadLetter]:
    return list(admin.ListDeadLetters(admin_pb2.ListDeadLettersRequest()).dead_letters)


def _code(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _status(error: grpc.RpcError) -> grpc.StatusCode:
    return cast(grpc.Call, error).code()


def _athlete(channel: grpc.Channel) -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    return stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Runner", time_zone="UTC")
        )
    ).name


def test_a_task_failing_for_good_is_dead_lettered_and_retried(
    runtime: Runtime, admin: Stub
) -> None:
    with structlog.contextvars.bound_contextvars(request_id="req-dead-1"):
        runtime.huey.submit(flaky, "k1", note="hello")
    (letter,) = _wait(lambda: _letters(admin))
    assert letter.name.startswith("deadLetters/")
    assert letter.task == "test_flaky"
    assert letter.job == ""
    assert letter.attempts == 3  # the first try and two retries
    assert json_format.MessageToDict(letter.arguments) == {
        "args": ["k1"],
        "kwargs": {"note": "hello"},
    }
    assert letter.error.code == code_pb2.UNKNOWN
    assert letter.error.message == "ValueError: k1 is not allowed yet"
    assert letter.request_id == "req-dead-1"
    assert letter.HasField("create_time")

    SUCCEED.add("k1")
    admin.RetryDeadLetter(admin_pb2.RetryDeadLetterRequest(name=letter.name))
    _wait(lambda: RAN == ["k1"])
    assert _letters(admin) == []  # removed once re-enqueued
    again = _code(lambda: admin.RetryDeadLetter(admin_pb2.RetryDeadLetterRequest(name=letter.name)))
    assert _status(again) == grpc.StatusCode.NOT_FOUND


def test_a_job_failing_for_good_ends_failed_and_resumes_on_retry(
    runtime: Runtime, admin: Stub, admin_channel: grpc.Channel
) -> None:
    store = runtime.job_store
    athlete = _athlete(admin_channel)
    athlete_id = athlete.split("/")[1]
    job, _ = store.create(athlete_id, KIND, {"file": "run.fit"})
    enqueue_job(runtime.huey, job)
    _wait(lambda: store.get(job.id).state.terminal)

    failed = store.get(job.id)
    assert failed.state == JobState.FAILED
    assert failed.error == {"type": "PermanentFailure", "message": "the file is corrupt"}
    last = store.events_after(job.id, 0)[-1]
    assert last.state == JobState.FAILED
    assert last.message == "PermanentFailure: the file is corrupt"

    (letter,) = _wait(lambda: _letters(admin))
    assert letter.task == "run_job"
    assert letter.job == f"{athlete}/jobs/{job.id}"
    assert letter.attempts == 1  # a permanent failure is not retried
    assert json_format.MessageToDict(letter.arguments) == {"args": [job.id], "kwargs": {}}

    SUCCEED.add(job.id)
    admin.RetryDeadLetter(admin_pb2.RetryDeadLetterRequest(name=letter.name))
    _wait(lambda: store.get(job.id).state == JobState.SUCCEEDED)
    assert [job.id] == RAN
    assert store.get(job.id).error is None
    states = [(e.state, e.message) for e in store.events_after(job.id, 0)]
    assert states[-3:] == [
        (JobState.QUEUED, "retried from dead letter"),
        (JobState.RUNNING, ""),
        (JobState.SUCCEEDED, ""),
    ]
    assert _letters(admin) == []


def test_delete_drops_a_dead_letter(runtime: Runtime, admin: Stub) -> None:
    letter = runtime.job_store.add_dead_letter(
        "test_flaky", None, {"args": ["x"], "kwargs": {}}, {"type": "E", "message": "m"}, 1
    )
    name = f"deadLetters/{letter.id}"
    assert [d.name for d in _letters(admin)] == [name]
    admin.DeleteDeadLetter(admin_pb2.DeleteDeadLetterRequest(name=name))
    assert _letters(admin) == []
    error = _code(lambda: admin.DeleteDeadLetter(admin_pb2.DeleteDeadLetterRequest(name=name)))
    assert _status(error) == grpc.StatusCode.NOT_FOUND
    assert RAN == []


def test_unknown_and_malformed_names(admin: Stub) -> None:
    calls: list[Callable[[str], Any]] = [
        lambda name: admin.RetryDeadLetter(admin_pb2.RetryDeadLetterRequest(name=name)),
        lambda name: admin.DeleteDeadLetter(admin_pb2.DeleteDeadLetterRequest(name=name)),
    ]
    for call in calls:
        unknown = _code(lambda: call("deadLetters/nosuch"))  # noqa: B023
        assert _status(unknown) == grpc.StatusCode.NOT_FOUND
        bad = _code(lambda: call("letters/x"))  # noqa: B023
        assert _status(bad) == grpc.StatusCode.INVALID_ARGUMENT


def test_pages_of_dead_letters(runtime: Runtime, admin: Stub) -> None:
    made = {
        runtime.job_store.add_dead_letter("test_flaky", None, {"args": [i]}, {}, 1).id
        for i in range(5)
    }
    seen: list[str] = []
    token = ""
    while True:
        page = admin.ListDeadLetters(
            admin_pb2.ListDeadLettersRequest(page_size=2, page_token=token)
        )
        assert len(page.dead_letters) <= 2
        seen += [d.name.split("/")[1] for d in page.dead_letters]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    tampered = _code(
        lambda: admin.ListDeadLetters(admin_pb2.ListDeadLettersRequest(page_token="garbage"))
    )
    assert _status(tampered) == grpc.StatusCode.INVALID_ARGUMENT


def test_athletes_cannot_reach_dead_letters(
    server: ServerThread, admin_channel: grpc.Channel
) -> None:
    athlete = _athlete(admin_channel)
    token = (
        athlete_pb2_grpc.AthleteServiceStub(admin_channel)
        .CreateAccessToken(
            athlete_pb2.CreateAccessTokenRequest(
                parent=athlete, access_token=athlete_pb2.AccessToken()
            )
        )
        .token
    )
    with channel_as(server.address, token) as channel:
        stub = Stub(channel)
        for call in (
            lambda: stub.ListDeadLetters(admin_pb2.ListDeadLettersRequest()),
            lambda: stub.RetryDeadLetter(admin_pb2.RetryDeadLetterRequest(name="deadLetters/x")),
            lambda: stub.DeleteDeadLetter(admin_pb2.DeleteDeadLetterRequest(name="deadLetters/x")),
        ):
            error = _code(call)
            assert _status(error) == grpc.StatusCode.PERMISSION_DENIED
            assert reason(error) == "ADMIN_ONLY"


def test_a_failing_periodic_task_is_not_dead_lettered(runtime: Runtime, admin: Stub) -> None:
    # The scheduler runs it once at startup (a new slot); this runs it once more.
    runtime.huey.submit(periodic_broken)
    _wait(lambda: len(PERIODIC_RUNS) >= 2)
    time.sleep(0.5)  # the failure has been handled
    assert _letters(admin) == []

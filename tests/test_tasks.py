"""The task queue as Stride uses Huey: request and trace context on every enqueue, retries
with full-jitter backoff, priorities, periodic tasks once per slot across consumers, and
unfinished tasks put back on the queue when workers stop. Runs on the SQLite queue and on
Redis (a key prefix of the test's own)."""

from __future__ import annotations

import datetime as dt
import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from huey import PriorityRedisHuey
from huey.exceptions import TaskException
from opentelemetry import trace

from core.settings import Settings
from core.telemetry import tracer
from tasks.declare import periodic, task
from tasks.priority import MAINTENANCE, SCHEDULED, USER
from tasks.queue import InProcessWorkers, StrideHuey, make_huey
from tasks.retry import Backoff
from tests.support import LogCapture, make_settings

log = structlog.get_logger("test")
ORDER: list[str] = []
ATTEMPTS: list[int] = []
TICKS: list[str] = []
STARTED = threading.Event()
RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _fresh_records() -> Iterator[None]:
    for record in (ORDER, ATTEMPTS, TICKS):
        record.clear()
    STARTED.clear()
    RELEASE.clear()
    yield
    RELEASE.set()  # never leave a worker thread waiting


@task(priority=SCHEDULED)
def record(label: str) -> None:
    ORDER.append(label)


@task(retries=2, backoff=Backoff(base=0.05, cap=0.1))
def flaky(fail_times: int) -> str:
    attempt = int(structlog.contextvars.get_contextvars()["attempt"])
    ATTEMPTS.append(attempt)
    if attempt <= fail_times:
        raise RuntimeError(f"attempt {attempt} failed")
    return "ok"


@task()
def whoami() -> dict[str, Any]:
    log.info("whoami")
    context = structlog.contextvars.get_contextvars()
    return {key: context.get(key) for key in ("request_id", "trace_id", "task", "attempt")}


@task()
def stubborn() -> None:
    """Ignores `stopping()`: only the grace period ends its consumer."""
    STARTED.set()
    RELEASE.wait(30)


@periodic(dt.timedelta(seconds=1))
def tick() -> None:
    TICKS.append(str(structlog.contextvars.get_contextvars()["task_id"]))


@pytest.fixture(params=["sqlite", "redis"])
def queue_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "redis":
        shared = request.getfixturevalue("shared_redis")
        return make_settings(
            tmp_path / "data", None, redis_url=shared.url, redis_key_prefix=shared.prefix
        )
    return make_settings(tmp_path / "data", None)


@contextmanager
def consuming(huey: StrideHuey, workers: int = 1, grace: float = 5.0) -> Iterator[None]:
    consumer = InProcessWorkers(huey, workers, grace)
    consumer.start()
    try:
        yield
    finally:
        consumer.stop()


def wait_until(condition: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- which queue -----------------------------------------------------------------------


def test_settings_choose_the_queue(queue_settings: Settings) -> None:
    huey = make_huey(queue_settings, [])
    try:
        if queue_settings.redis_url is not None:
            assert isinstance(huey, PriorityRedisHuey)
            # Huey drops punctuation from the name; the test's prefix is still in it.
            token = queue_settings.redis_key_prefix.split("-")[-1].rstrip(":")
            assert token in huey.storage.queue_key
        else:
            assert huey.describe() == f"sqlite {queue_settings.data_dir / 'huey.db'}"
    finally:
        huey.close()


def test_a_task_not_installed_is_refused(tmp_path: Path) -> None:
    huey = make_huey(make_settings(tmp_path, None), [record])
    with pytest.raises(LookupError, match="whoami"):
        huey.submit(whoami)


# --- context ---------------------------------------------------------------------------


def test_every_enqueue_carries_request_id_and_trace(
    queue_settings: Settings, logs: LogCapture
) -> None:
    huey = make_huey(queue_settings, [whoami])
    with (
        tracer().start_as_current_span("rpc", kind=trace.SpanKind.SERVER) as rpc,
        structlog.contextvars.bound_contextvars(request_id="req-ctx-1"),
    ):
        joined = huey.submit(whoami)  # nothing passed explicitly
    alone = huey.submit(whoami)
    with consuming(huey):
        ran_joined = joined.get(blocking=True, timeout=20)
        ran_alone = alone.get(blocking=True, timeout=20)
    rpc_trace = format(rpc.get_span_context().trace_id, "032x")
    assert ran_joined == {
        "request_id": "req-ctx-1",
        "trace_id": rpc_trace,
        "task": "whoami",
        "attempt": 1,
    }
    # Work nobody requested has no request id, but a trace of its own.
    assert ran_alone["request_id"] is None
    assert ran_alone["trace_id"] not in ("", rpc_trace)
    lines = [e for e in logs.events() if e.get("request_id") == "req-ctx-1"]
    assert {e["event"] for e in lines} >= {"task started", "whoami", "task finished"}
    assert all(e["trace_id"] == rpc_trace and e["task"] == "whoami" for e in lines)


def test_a_task_enqueued_by_a_process_with_sentry_runs_where_sentry_is_off(
    tmp_path: Path,
) -> None:
    """Sentry's Huey integration adds `sentry_headers` at enqueue and removes them only
    where it is enabled: a worker without a DSN must still run the task."""
    huey = make_huey(make_settings(tmp_path, None), [whoami])
    headers = {"sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"}
    result = huey.submit(whoami, sentry_headers=headers)  # type: ignore[call-arg]
    with consuming(huey):
        assert result.get(blocking=True, timeout=20)["task"] == "whoami"


# --- retries ---------------------------------------------------------------------------


def test_backoff_ceilings_double_up_to_the_cap() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    ceilings = [backoff.ceiling(n) for n in range(1, 12)]
    assert ceilings == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert backoff.ceiling(10_000) == 300  # no overflow however long a task keeps failing
    for bad in (dict(base=0.0), dict(base=5.0, cap=1.0)):
        with pytest.raises(ValueError, match="base"):
            Backoff(**bad)
    with pytest.raises(ValueError, match="from 1"):
        backoff.ceiling(0)


@pytest.mark.parametrize("failures", [1, 3, 6, 9, 20])
def test_full_jitter_spreads_delays_over_the_whole_range(failures: int) -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    ceiling = backoff.ceiling(failures)
    rng = random.Random(failures)
    delays = [backoff.delay(failures, rng) for _ in range(20_000)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Uniform on [0, ceiling]: mean half the ceiling, both ends reached, no clustering.
    assert statistics.fmean(delays) == pytest.approx(ceiling / 2, rel=0.03)
    assert min(delays) < ceiling * 0.01
    assert max(delays) > ceiling * 0.99
    deciles = [sum(1 for d in delays if i * ceiling / 10 <= d < (i + 1) * ceiling / 10)
               for i in range(10)]  # fmt: skip
    assert all(1700 < count < 2300 for count in deciles)


def test_failed_attempts_retry_with_jittered_delays_and_keep_the_request(
    queue_settings: Settings, logs: LogCapture
) -> None:
    huey = make_huey(queue_settings, [flaky])
    with structlog.contextvars.bound_contextvars(request_id="req-retry-1"):
        result = huey.submit(flaky, 2)
    with consuming(huey):
        assert result.get(blocking=True, timeout=30) == "ok"
    assert ATTEMPTS == [1, 2, 3]
    retried = logs.events("task failed, will retry")
    assert [e["attempt"] for e in retried] == [1, 2]
    # Full jitter: at most the ceiling for that failure (0.05 s, then 0.1 s).
    assert all(0 <= e["retry_in_seconds"] <= c for e, c in zip(retried, [0.05, 0.1], strict=True))
    assert all(e["request_id"] == "req-retry-1" for e in retried)
    assert "RuntimeError('attempt 1 failed')" in retried[0]["error"]
    (finished,) = logs.events("task finished")
    assert finished["attempt"] == 3
    assert finished["request_id"] == "req-retry-1"


def test_a_task_out_of_retries_fails_once_with_its_error(tmp_path: Path, logs: LogCapture) -> None:
    huey = make_huey(make_settings(tmp_path, None), [flaky])
    result = huey.submit(flaky, 99)
    with consuming(huey), pytest.raises(TaskException, match="attempt 3 failed"):
        result.get(blocking=True, timeout=30)
    assert ATTEMPTS == [1, 2, 3]
    (failed,) = logs.events("task failed")
    assert failed["attempt"] == 3
    assert failed["level"] == "error"
    assert "Traceback" in failed["exception"]


# --- priorities ------------------------------------------------------------------------


def test_a_higher_priority_task_enqueued_later_runs_first(queue_settings: Settings) -> None:
    huey = make_huey(queue_settings, [record])
    huey.submit(record, "scheduled-1")  # declared SCHEDULED
    huey.submit(record.options(priority=SCHEDULED), "scheduled-2")
    huey.submit(record.options(priority=USER), "user-started")
    huey.submit(record.options(priority=MAINTENANCE), "maintenance")
    with consuming(huey, workers=1):
        wait_until(lambda: len(ORDER) == 4)
    assert ORDER == ["maintenance", "user-started", "scheduled-1", "scheduled-2"]


# --- periodic tasks --------------------------------------------------------------------


def test_one_scheduler_claims_each_slot(queue_settings: Settings) -> None:
    first, second = (make_huey(queue_settings, [tick]) for _ in range(2))
    key = "tests.test_tasks.tick"
    noon = dt.datetime(2030, 1, 1, 12, 0, 0)  # naive UTC, as Huey passes it
    slot = int(noon.replace(tzinfo=dt.UTC).timestamp())
    assert [t.id for t in first.read_periodic(noon)] == [f"periodic:{key}:{slot}"]
    assert second.read_periodic(noon) == []
    assert first.read_periodic(noon + dt.timedelta(milliseconds=500)) == []  # same slot
    later = noon + dt.timedelta(seconds=1)
    assert [t.id for t in second.read_periodic(later)] == [f"periodic:{key}:{slot + 1}"]
    assert first.read_periodic(later) == []
    # A scheduler whose clock lags never claims a slot that another has moved past
    # (SQLite keeps the last slot per task; Redis keeps each slot's claim for a minute).
    lagging = make_huey(queue_settings, [tick])
    assert lagging.read_periodic(noon) == []


def test_periodic_task_runs_once_per_slot_across_two_consumers(queue_settings: Settings) -> None:
    hueys = [make_huey(queue_settings, [tick]) for _ in range(2)]
    with consuming(hueys[0]), consuming(hueys[1]):
        time.sleep(3.6)
        wait_until(lambda: hueys[0].pending_count() == 0)
    slots = [int(task_id.rsplit(":", 1)[1]) for task_id in TICKS]
    assert len(slots) == len(set(slots)), f"a slot ran twice: {sorted(slots)}"
    assert len(slots) >= 2


# --- stopping --------------------------------------------------------------------------


def test_a_task_still_running_after_the_grace_period_goes_back_on_the_queue(
    tmp_path: Path, logs: LogCapture
) -> None:
    huey = make_huey(make_settings(tmp_path, None), [stubborn])
    huey.submit(stubborn)
    consumer = InProcessWorkers(huey, 1, grace=0.3)
    consumer.start()
    assert STARTED.wait(20)
    started = time.monotonic()
    consumer.stop()
    assert time.monotonic() - started < 3
    assert huey.pending_count() == 1
    (line,) = logs.events("task interrupted by shutdown, put back on the queue")
    assert line["task"] == "stubborn"

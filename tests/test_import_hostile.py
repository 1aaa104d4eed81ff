"""File import against a hostile client: protocol abuse of both upload methods, clients that
stall, flood or lie, and files whose values are legal XML/CSV but absurd (year 1, year 9999,
NaN, 10^300 seconds). The real server (SQLite), one per module; every test checks that no
job and no staging file is left where none should be, and that bad input is never UNKNOWN
or INTERNAL, nor a job retried for a file's own fault."""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2
from sqlalchemy import text
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
)

from storage.staging import UPLOAD_GRACE_SECONDS
from tasks.imports import _ended_check
from tests.fit_writer import fit_activity
from tests.import_flow import all_activities, gpx_track, item_errors, upload, upload_requests
from tests.strava_flow import watch
from tests.support import (
    ADMIN_TOKEN,
    LogCapture,
    ServerThread,
    channel_as,
    make_settings,
    reason,
    violations,
)

IDLE = 1.5  # the server's stream idle timeout here
MAX_STREAMS = 3
SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
FAILED = job_pb2.JOB_STATE_FAILED
BAD_INPUT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}
START = dt.datetime(2024, 5, 1, 7, 0, tzinfo=dt.UTC)

Request = activity_pb2.UploadActivityFileRequest
BodyRequest = activity_pb2.UploadActivityFileBodyRequest


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = make_settings(
        tmp_path_factory.mktemp("hostile") / "data",
        None,
        stream_idle_timeout_seconds=IDLE,
        max_streams_per_principal=MAX_STREAMS,
    )
    with ServerThread(settings) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: ServerThread) -> Iterator[grpc.Channel]:
    with channel_as(server.address, ADMIN_TOKEN) as channel:
        yield channel


@pytest.fixture
def athlete(admin: grpc.Channel) -> str:
    return _athlete(admin)


@pytest.fixture
def mine(server: ServerThread, admin: grpc.Channel, athlete: str) -> Iterator[grpc.Channel]:
    """A channel with `athlete`'s own token."""
    token = (
        athlete_pb2_grpc.AthleteServiceStub(admin)
        .CreateAccessToken(athlete_pb2.CreateAccessTokenRequest(parent=athlete))
        .token
    )
    with channel_as(server.address, token) as channel:
        yield channel


# Helpers ---------------------------------------------------------------------------------


def _athlete(channel: grpc.Channel, time_zone: str = "Europe/Paris") -> str:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    request = athlete_pb2.CreateAthleteRequest(
        athlete=athlete_pb2.Athlete(display_name="Hostile", time_zone=time_zone)
    )
    return str(stub.CreateAthlete(request).name)


def _stub(channel: grpc.Channel) -> activity_pb2_grpc.ActivityServiceStub:
    return activity_pb2_grpc.ActivityServiceStub(channel)


def _jobs(channel: grpc.Channel, athlete: str) -> list[job_pb2.Job]:
    stub = job_pb2_grpc.JobServiceStub(channel)
    return list(stub.ListJobs(job_pb2.ListJobsRequest(parent=athlete)).jobs)


def _staged(server: ServerThread) -> list[str]:
    directory = server.settings.staging_dir
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _parts(server: ServerThread) -> list[str]:
    return [name for name in _staged(server) if name.endswith(".part")]


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _no_trace(server: ServerThread, admin: grpc.Channel, athlete: str) -> None:
    """The refused upload left no job and (once its call ended) no partial file."""
    assert _jobs(admin, athlete) == []
    _wait_until(lambda: _parts(server) == [], 5)


def _gpx(times: list[str], *, lat: str = "45.0", lon: str = "7.0", extra: str = "") -> bytes:
    points = "".join(
        f'<trkpt lat="{lat}" lon="{lon}"><ele>100</ele><time>{t}</time>{extra}</trkpt>'
        for t in times
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="hostile" '
        'xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">'
        f"<trk><trkseg>{points}</trkseg></trk></gpx>"
    ).encode()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# The request id each upload was sent with, by job name: the job's task logs it, so a
# retried attempt is told apart from other tests' (the server is shared by the module).
_REQUEST_IDS: dict[str, str] = {}


def _upload(
    channel: grpc.Channel, athlete: str, file_name: str, data: bytes, **options: Any
) -> job_pb2.Job:
    request_id = uuid.uuid4().hex
    job: job_pb2.Job = _stub(channel).UploadActivityFile(
        upload_requests(athlete, file_name, data, **options),
        timeout=30,
        metadata=(("x-request-id", request_id),),
    )
    _REQUEST_IDS.setdefault(job.name, request_id)
    return job


def _retries(logs: LogCapture, job_name: str) -> list[dict[str, Any]]:
    request_id = _REQUEST_IDS[job_name]
    return [e for e in logs.events("task failed, will retry") if e.get("request_id") == request_id]


def _ended_or_retried(
    channel: grpc.Channel, job_name: str, logs: LogCapture, seconds: float = 20.0
) -> job_pb2.Job:
    """The job once it ended; fails as soon as an attempt of it fails and is retried (a
    file's own fault must never fail the attempt: that is a storage error's path)."""
    stub = job_pb2_grpc.JobServiceStub(channel)
    deadline = time.monotonic() + seconds
    while True:
        job = stub.GetJob(job_pb2.GetJobRequest(name=job_name))
        if job.state in (SUCCEEDED, FAILED, job_pb2.JOB_STATE_CANCELLED):
            return job
        retried = _retries(logs, job_name)
        assert not retried, f"the job's attempt failed and is retried: {retried[0]['error']}"
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)


def _import(
    channel: grpc.Channel, athlete: str, name: str, data: bytes, logs: LogCapture
) -> tuple[job_pb2.Job, dict[str, str]]:
    job = _upload(channel, athlete, name, data)
    ended = _ended_or_retried(channel, job.name, logs)
    return ended, item_errors(watch(channel, job.name, timeout=10))


# Upload protocol abuse -------------------------------------------------------------------


def test_a_second_header_or_a_chunk_first_is_invalid_and_leaves_nothing(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str
) -> None:
    other = _athlete(admin)
    data = gpx_track(START, 30)
    header = activity_pb2.UploadHeader(parent=athlete, file_name="a.gpx")
    stolen = activity_pb2.UploadHeader(parent=other, file_name="a.gpx")
    calls = {
        "header twice": [Request(header=header), Request(header=header), Request(chunk=data)],
        "chunk first": [Request(chunk=data), Request(header=header)],
        "other's header mid-stream": [
            Request(header=header),
            Request(chunk=data[:100]),
            Request(header=stolen),
            Request(chunk=data[100:]),
        ],
        "nothing at all": [],
    }
    for label, requests in calls.items():
        error = _refused(lambda r=requests: _stub(mine).UploadActivityFile(iter(r), timeout=10))  # type: ignore[misc]
        assert error.code() in BAD_INPUT, (label, error.code(), error.details())
    _no_trace(server, admin, athlete)
    assert _jobs(admin, other) == []
    assert _staged(server) == []


def test_body_upload_takes_parent_and_name_from_the_first_message_only(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    other = _athlete(admin)
    data = gpx_track(START, 30)
    body = _stub(mine).UploadActivityFileBody
    # No parent first, parent later: refused (the first message decides).
    late = [
        BodyRequest(file_name="a.gpx", body=httpbody_pb2.HttpBody(data=data[:50])),
        BodyRequest(parent=athlete, body=httpbody_pb2.HttpBody(data=data[50:])),
    ]
    assert _refused(lambda: body(iter(late), timeout=10)).code() in BAD_INPUT
    admin_late = _refused(lambda: _stub(admin).UploadActivityFileBody(iter(late), timeout=10))
    assert admin_late.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parent" in violations(admin_late)
    # No file name.
    nameless = [BodyRequest(parent=athlete, body=httpbody_pb2.HttpBody(data=data))]
    missing = _refused(lambda: body(iter(nameless), timeout=10))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "file_name" in violations(missing)
    # One body message over 1 MiB.
    big = [
        BodyRequest(
            parent=athlete, file_name="a.gpx", body=httpbody_pb2.HttpBody(data=b"<" * (2**20 + 1))
        )
    ]
    assert _refused(lambda: body(iter(big), timeout=10)).code() == grpc.StatusCode.INVALID_ARGUMENT
    _no_trace(server, admin, athlete)
    # Another athlete named in a later message is ignored: the upload is mine alone.
    mixed = [
        BodyRequest(parent=athlete, file_name="a.gpx", body=httpbody_pb2.HttpBody(data=data[:50])),
        BodyRequest(parent=other, file_name="evil.gpx", body=httpbody_pb2.HttpBody(data=data[50:])),
    ]
    body_id = uuid.uuid4().hex
    job = body(iter(mixed), timeout=10, metadata=(("x-request-id", body_id),))
    _REQUEST_IDS[job.name] = body_id
    assert job.name.startswith(athlete + "/")
    assert _ended_or_retried(admin, job.name, logs).state == SUCCEEDED
    assert len(all_activities(admin, athlete)) == 1
    assert _jobs(admin, other) == []
    assert all_activities(admin, other) == []


def test_hostile_header_values_are_invalid_argument(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str
) -> None:
    data = gpx_track(START, 30)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"size_bytes": -1}, "header.size_bytes"),
        ({"size_bytes": 2**62}, "header.size_bytes"),
        ({"file_name": "x" * 10_000 + ".gpx"}, "header.file_name"),
        ({"file_name": "run\x00.gpx"}, "header.file_name"),
        ({"file_name": "run\n.gpx"}, "header.file_name"),
        ({"file_name": "   "}, "header.file_name"),
        ({"request_id": "not a uuid"}, "header.request_id"),
        ({"size_bytes": len(data) + 1}, "chunk"),
        ({"size_bytes": len(data) - 1}, "chunk"),
    ]
    for options, field in cases:
        name = options.pop("file_name", "run.gpx")
        error = _refused(lambda n=name, o=options: upload(mine, athlete, n, data, **o))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.code())
        assert field in violations(error), (field, violations(error))
    _no_trace(server, admin, athlete)
    assert _staged(server) == []


def test_file_names_with_paths_and_unicode_stay_names(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    staging = server.settings.staging_dir
    before = set(os.listdir(staging.parent)) if staging.parent.exists() else set()
    names = ["../../../escape.gpx", "/etc/passwd.gpx", "C:\\x\\..\\y.gpx", "🏃 коса 日本.gpx"]
    for index, name in enumerate(names):
        data = gpx_track(START + dt.timedelta(days=index), 20)
        job, errors = _import(mine, athlete, name, data, logs)
        assert job.state == SUCCEEDED, (name, job.error)
        assert errors == {}
    assert len(all_activities(admin, athlete)) == len(names)
    assert set(os.listdir(staging.parent)) <= before | {staging.name}
    assert _staged(server) == []


# Clients that stall, flood or leave --------------------------------------------------------


def test_a_client_that_stops_sending_is_ended_and_its_part_removed(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    release = threading.Event()
    sent = threading.Event()

    def stalled() -> Iterator[Request]:
        generated = upload_requests(athlete, "stall.gpx", gpx_track(START, 200), chunk=1000)
        yield next(generated)
        yield next(generated)
        sent.set()
        release.wait(20)

    call = _stub(mine).UploadActivityFile.future(stalled(), timeout=20)
    try:
        assert sent.wait(5)
        _wait_until(lambda: _parts(server) != [], 5)
        # Another athlete uploads meanwhile, unhindered.
        other = _athlete(admin)
        job, _ = _import(admin, other, "ok.gpx", gpx_track(START, 20), logs)
        assert job.state == SUCCEEDED
        error = _refused(call.result)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        release.set()
    _no_trace(server, admin, athlete)


def test_empty_chunks_keep_only_their_own_stream_open(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    stop = threading.Event()

    def trickle() -> Iterator[Request]:
        yield Request(header=activity_pb2.UploadHeader(parent=athlete, file_name="e.gpx"))
        while not stop.wait(0.2):
            yield Request(chunk=b"")

    call = _stub(mine).UploadActivityFile.future(trickle(), timeout=20)
    try:
        time.sleep(IDLE + 1)  # past the idle timeout: empty messages keep it alive
        other = _athlete(admin)
        job, _ = _import(admin, other, "ok.gpx", gpx_track(START, 20), logs)
        assert job.state == SUCCEEDED
    finally:
        stop.set()
    error = _refused(call.result)  # nothing but empty chunks: an empty upload
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    _no_trace(server, admin, athlete)


def test_a_deadline_mid_upload_leaves_no_job_and_no_part(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str
) -> None:
    def slow() -> Iterator[Request]:
        for request in upload_requests(athlete, "slow.gpx", gpx_track(START, 300), chunk=2000):
            yield request
            time.sleep(0.1)

    error = _refused(lambda: _stub(mine).UploadActivityFile(slow(), timeout=0.8))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.3)
    _no_trace(server, admin, athlete)


def test_too_many_uploads_at_once_are_refused_and_no_slot_or_part_leaks(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def held(index: int) -> Iterator[Request]:
        generated = upload_requests(athlete, f"{index}.gpx", gpx_track(START, 100), chunk=500)
        yield next(generated)
        yield next(generated)
        started.release()
        release.wait(10)

    calls = [_stub(mine).UploadActivityFile.future(held(i), timeout=10) for i in range(6)]
    try:
        for _ in range(MAX_STREAMS):
            assert started.acquire(timeout=5)
        _wait_until(lambda: sum(c.done() for c in calls) >= 6 - MAX_STREAMS, 5)
        refused = [c for c in calls if c.done()]
        for call in refused:
            error = call.exception()
            assert isinstance(error, grpc.RpcError)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason(error) == "TOO_MANY_STREAMS"
    finally:
        for call in calls:
            call.cancel()  # type: ignore[no-untyped-call]
        release.set()
    _no_trace(server, admin, athlete)
    # Every slot came back: as many uploads as the limit allow succeed at once.
    with ThreadPoolExecutor(MAX_STREAMS) as pool:
        jobs = list(
            pool.map(
                lambda i: _upload(
                    mine, athlete, f"ok{i}.gpx", gpx_track(START + dt.timedelta(days=i), 20)
                ),
                range(MAX_STREAMS),
            )
        )
    for job in jobs:
        assert _ended_or_retried(admin, job.name, logs).state == SUCCEEDED


def test_a_request_id_reused_with_other_bytes_or_at_once_gives_one_job(
    server: ServerThread, admin: grpc.Channel, mine: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    request_id = "6f1c2f4e-3a43-4d3c-9a51-0d8c1b7e2a10"
    first = gpx_track(START, 20)
    second = gpx_track(START + dt.timedelta(days=3), 40)
    job = _upload(mine, athlete, "a.gpx", first, request_id=request_id)
    again = _upload(mine, athlete, "b.gpx", second, request_id=request_id)
    assert again.name == job.name
    assert _ended_or_retried(admin, job.name, logs).state == SUCCEEDED
    concurrent_id = "0b7d6f1e-5a22-4c1b-8f3e-9d2a7c6b5e41"
    with ThreadPoolExecutor(MAX_STREAMS) as pool:
        names = set(
            pool.map(
                lambda i: (
                    _upload(
                        mine,
                        athlete,
                        f"c{i}.gpx",
                        gpx_track(START + dt.timedelta(days=10 + i), 20),
                        request_id=concurrent_id,
                    ).name
                ),
                range(MAX_STREAMS),
            )
        )
    assert len(names) == 1
    _ended_or_retried(admin, names.pop(), logs)
    assert len(_jobs(admin, athlete)) == 2
    assert len(all_activities(admin, athlete)) == 2  # the dropped bytes were not imported
    _wait_until(lambda: _staged(server) == [], 5)


# Job level ---------------------------------------------------------------------------------


def test_the_sweep_removes_an_upload_whose_job_ended_or_never_existed(
    server: ServerThread, admin: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    runtime = server.running.runtime  # type: ignore[union-attr]
    job = _upload(admin, athlete, "a.gpx", gpx_track(START, 20))
    _ended_or_retried(admin, job.name, logs)
    directory = server.settings.staging_dir
    job_id = job.name.rsplit("/", 1)[-1]
    # As a queued job cancelled before it ran leaves it: its job has ended.
    ended = directory / f"{job_id}.upload"
    orphan = directory / "no-such-job.upload"
    young = directory / "0123456789abcdef.part"
    old = directory / "fedcba9876543210.part"
    for path in (ended, orphan, young, old):
        path.write_bytes(b"x")
    past = time.time() - UPLOAD_GRACE_SECONDS - 10
    for path in (ended, orphan):
        os.utime(path, (past, past))
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    try:
        removed = runtime.staging.sweep(_ended_check(runtime))
        assert removed == 3
        assert _staged(server) == [young.name]
    finally:
        young.unlink(missing_ok=True)


def _delete_mid_import(server: ServerThread, admin: grpc.Channel) -> tuple[str, str]:
    """An athlete deleted once their 60-file import has stored a file: (athlete, job)."""
    athlete = _athlete(admin)
    files = {
        f"activities/{i:03}.gpx": gpx_track(START + dt.timedelta(days=i), 60) for i in range(60)
    }
    job = _upload(admin, athlete, "many.zip", _zip(files))
    jobs = job_pb2_grpc.JobServiceStub(admin)
    _wait_until(lambda: jobs.GetJob(job_pb2.GetJobRequest(name=job.name)).progress.done > 0, 10)
    athlete_pb2_grpc.AthleteServiceStub(admin).DeleteAthlete(
        athlete_pb2.DeleteAthleteRequest(name=athlete)
    )
    return athlete, job.name


def _job_gone(admin: grpc.Channel, name: str) -> bool:
    try:
        job_pb2_grpc.JobServiceStub(admin).GetJob(job_pb2.GetJobRequest(name=name))
    except grpc.RpcError as error:
        return bool(error.code() == grpc.StatusCode.NOT_FOUND)
    return False


def test_deleting_the_athlete_mid_import_leaves_no_rows_and_a_working_server(
    server: ServerThread, admin: grpc.Channel, logs: LogCapture
) -> None:
    athlete, job = _delete_mid_import(server, admin)
    _wait_until(lambda: _job_gone(admin, job), 5)
    time.sleep(1.0)  # the worker's next item, had it gone on storing
    athlete_id = athlete.rsplit("/", 1)[-1]
    with server.running.database.read_primary() as session:  # type: ignore[union-attr]
        left = session.execute(
            text("SELECT count(*) FROM activities WHERE athlete_id = :a"), {"a": athlete_id}
        ).scalar_one()
    assert left == 0, "activities outlived their athlete"
    other = _athlete(admin)
    ended, _ = _import(admin, other, "ok.gpx", gpx_track(START, 20), logs)
    assert ended.state == SUCCEEDED


def test_deleting_the_athlete_mid_import_ends_the_job_quietly(
    server: ServerThread, admin: grpc.Channel, logs: LogCapture
) -> None:
    _, job = _delete_mid_import(server, admin)
    _wait_until(lambda: _job_gone(admin, job), 5)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        retried = _retries(logs, job)
        assert not retried, retried[0]["error"]
        time.sleep(0.05)
    assert _staged(server) == []


def test_a_zip_of_50000_tiny_entries_and_a_garbage_csv(
    admin: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(50_000):
            archive.writestr(f"media/{i}.txt", b"")
        archive.writestr("activities.csv", os.urandom(200_000))
        archive.writestr("activities/ok.gpx", gpx_track(START, 20))
    started = time.monotonic()
    job, errors = _import(admin, athlete, "export.zip", buffer.getvalue(), logs)
    assert job.state == SUCCEEDED, job.error
    assert errors == {}
    assert job.result.created == 1
    assert time.monotonic() - started < 20


def test_odd_but_readable_recordings_import_or_fail_alone(
    admin: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    t = "2024-05-0{}T07:00:{:02}Z"
    hr = (
        "<extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>{}</gpxtpx:hr>"
        "</gpxtpx:TrackPointExtension></extensions>"
    )
    laps = "".join(
        "<Lap StartTime='2024-05-06T07:00:00Z'><Track><Trackpoint>"
        f"<Time>2024-05-06T{7 + i // 3600:02}:{i // 60 % 60:02}:{i % 60:02}Z</Time>"
        f"<DistanceMeters>-{i}</DistanceMeters></Trackpoint></Track></Lap>"
        for i in range(20_000)
    )
    tcx = (
        '<?xml version="1.0"?><TrainingCenterDatabase '
        'xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2">'
        f"<Activities><Activity Sport='Running'><Id>2024-05-06T07:00:00Z</Id>{laps}"
        "</Activity></Activities></TrainingCenterDatabase>"
    ).encode()
    files = {
        "activities/one-time.gpx": _gpx([t.format(1, 0)] * 50),
        "activities/backwards.gpx": _gpx([t.format(2, 59 - i) for i in range(60)]),
        "activities/nan.gpx": _gpx(
            [t.format(3, i) for i in range(10)], lat="NaN", lon="inf", extra=hr.format("nan")
        ),
        "activities/absurd.gpx": _gpx(
            [t.format(4, i) for i in range(10)], lat="1e308", lon="-1e308", extra=hr.format("1e400")
        ),
        "activities/laps.tcx": tcx,
        "activities/no-records.fit": fit_activity(START, []),
    }
    job, errors = _import(admin, athlete, "odd.zip", _zip(files), logs)
    assert job.state == SUCCEEDED, job.error
    assert set(errors) <= {"activities/no-records.fit", "activities/one-time.gpx"}, errors
    assert job.result.created + job.result.failed == len(files)
    for activity in all_activities(admin, athlete):
        assert activity.distance_meters >= 0, activity.title


# Values no database or datetime can hold: a file's fault, never a retried job -------------


def test_a_recording_at_the_end_of_time_fails_alone(admin: grpc.Channel, logs: LogCapture) -> None:
    athlete = _athlete(admin, "America/New_York")
    files = {
        "activities/end.gpx": _gpx([f"9999-12-31T23:59:{s:02}Z" for s in range(40, 50)]),
        "activities/ok.gpx": gpx_track(START, 20),
    }
    job, errors = _import(admin, athlete, "end.zip", _zip(files), logs)
    assert job.state == SUCCEEDED
    assert job.result.created == 1
    assert set(errors) == {"activities/end.gpx"}


def test_a_recording_in_year_one_fails_alone(
    admin: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    files = {
        "activities/first.gpx": _gpx([f"0001-01-01T00:00:{s:02}Z" for s in range(10)]),
        "activities/ok.gpx": gpx_track(START, 20),
    }
    job, errors = _import(admin, athlete, "first.zip", _zip(files), logs)
    assert job.state == SUCCEEDED
    assert job.result.created == 1
    assert set(errors) == {"activities/first.gpx"}


def _export_csv(rows: list[str]) -> bytes:
    header = "Activity ID,Activity Date,Activity Name,Activity Type,Elapsed Time,Distance,Filename"
    return "\n".join([header, *rows, ""]).encode()


def test_a_manual_row_lasting_1e300_seconds_fails_alone(
    admin: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    csv = _export_csv(['1,"May 1, 2024, 7:00:00 AM",Forever,Run,1e300,5,'])
    files = {"activities.csv": csv, "activities/ok.gpx": gpx_track(START, 20)}
    job, errors = _import(admin, athlete, "export.zip", _zip(files), logs)
    assert job.state == SUCCEEDED
    assert job.result.created == 1
    assert list(errors.values()) == ["FILE_BAD_TIME"]


def test_manual_rows_past_the_year_9999_fail_alone(
    admin: grpc.Channel, athlete: str, logs: LogCapture
) -> None:
    csv = _export_csv(
        [
            '1,"Dec 31, 9999, 11:59:30 PM",Last,Run,10,5,',
            '2,"May 1, 2024, 7:00:00 AM",Long,Run,300000000000,5,',
        ]
    )
    files = {"activities.csv": csv, "activities/ok.gpx": gpx_track(START, 20)}
    job, errors = _import(admin, athlete, "export.zip", _zip(files), logs)
    assert job.state == SUCCEEDED
    assert job.result.created == 1
    assert len(errors) == 2

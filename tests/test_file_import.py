"""File import end to end: UploadActivityFile stages the bytes and starts a FILE_IMPORT job
that in-process workers run; WatchJob shows each file. The real server on both databases,
the real fixtures of ../shared/fixtures/real, hostile uploads beside good files."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import itertools
import math
import re
import stat
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fitdecode
import grpc
import pytest
from google.api import httpbody_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from stride.v1 import (
    activity_pb2,
    activity_pb2_grpc,
    athlete_pb2,
    athlete_pb2_grpc,
    common_pb2,
    job_pb2,
    job_pb2_grpc,
)

from domain.files.detect import parse_file
from domain.imports import activity_from_file
from tests.export_factory import strava_export
from tests.import_flow import (
    all_activities,
    import_and_watch,
    item_errors,
    sha256,
    upload,
    upload_requests,
    zip_of,
)
from tests.strava_flow import create_athlete, watch
from tests.support import (
    ADMIN_TOKEN,
    ServerThread,
    channel_as,
    make_settings,
    real_fixture,
    reason,
    violations,
)

SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
FAILED = job_pb2.JOB_STATE_FAILED

# Every real file, and what importing it must give: the number of activities, or the reason
# it fails. Same-activity files (the Edge 1000 ride in three formats, the Forerunner run with
# and without heart rate) are linked to the first of them (the duplicate rule).
REAL_OUTCOMES: dict[str, int | str] = {
    "fit/corrupt_truncated-eof.fit": "FILE_CORRUPT",
    "fit/multisport_fr935_run-rowing_no-gps.fit": 2,
    "fit/ride_coros-pace2_hr_misaligned-fields.fit": 1,
    "fit/ride_edge1000_hr-cad-power.fit": 1,
    "fit/run_fenix2_hr-cad-temp.fit": 1,
    "fit/run_fenix5_hr-cad_short.fit": 1,
    "fit/run_strava-android-app_gps-only_undefined-local-msg.fit": "FILE_CORRUPT",
    "fit/run_stryd_hr-cad-power_devfields.fit": 1,
    "gpx/bom_no-namespace_waypoint-only.gpx": "FILE_NO_TIMESTAMPS",
    "gpx/gpsbabel_4-tracks_partial-times.gpx": 1,
    "gpx/malformed_bad-character.gpx": "FILE_CORRUPT",
    "gpx/ride_garmin-connect_edge1000_hr-cad-temp.gpx": 1,
    "gpx/route_strava_run_no-times.gpx": "FILE_NO_TIMESTAMPS",
    "gpx/run_garmin-connect_hr-cad.gpx": 1,
    "gpx/runkeeper_waypoint-hr-only.gpx": "FILE_NO_TIMESTAMPS",
    "gpx/track_empty-second-segment.gpx": 1,
    "tcx/ride_edge1000_hr-cad-power_5laps.tcx": 1,
    "tcx/run_fitbit-ionic_hr_bom_tz-offset.tcx": 1,
    "tcx/run_forerunner410_hr.tcx": 1,
    "tcx/run_forerunner410_no-hr.tcx": 1,
    "tcx/xcski-sport-other_vivoactive-hr_hr-runcadence.tcx": 1,
}
LINKED = {  # imported after (sorted by name) the file whose activity they duplicate
    "gpx/ride_garmin-connect_edge1000_hr-cad-temp.gpx",
    "tcx/ride_edge1000_hr-cad-power_5laps.tcx",
    "tcx/run_forerunner410_no-hr.tcx",
}


def _staged(server: ServerThread) -> list[str]:
    directory = server.settings.staging_dir
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# Values read from the files without the import code ---------------------------------------


def _times(text: str, tag: str) -> list[dt.datetime]:
    found = re.findall(rf"<{tag}>([^<]+)</{tag}>", text)
    return sorted({dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in found})


def _expected(relative: str, data: bytes) -> dict[str, float]:
    """Samples, duration (s) and, where the file states it, distance (m) of its activity."""
    if relative.endswith(".fit"):
        records: dict[dt.datetime, float | None] = {}
        with fitdecode.FitReader(io.BytesIO(data)) as reader:
            for frame in reader:
                if not isinstance(frame, fitdecode.FitDataMessage) or frame.name != "record":
                    continue
                if frame.has_field("timestamp"):
                    distance = frame.get_value("distance") if frame.has_field("distance") else None
                    records[frame.get_value("timestamp")] = distance
        times = sorted(records)
        distances = [d for d in (records[t] for t in times) if d is not None]
        expected = {
            "samples": len(times),
            "start": times[0].timestamp(),
            "duration": (times[-1] - times[0]).total_seconds(),
        }
        if distances:
            expected["distance"] = max(distances) - distances[0]
        return expected
    text = data.decode("utf-8-sig")
    if relative.endswith(".tcx"):
        points = re.findall(r"<Trackpoint>.*?</Trackpoint>", text, re.S)
        times = sorted({t for p in points for t in _times(p, "Time")})
        distances = [float(d) for p in points for d in re.findall(r"<DistanceMeters>([^<]+)<", p)]
        return {
            "samples": len(times),
            "duration": (times[-1] - times[0]).total_seconds(),
            "distance": max(distances) - distances[0],  # an odometer (one file resets at its end)
        }
    points = re.findall(r"<trkpt[^>]*>.*?</trkpt>", text, re.S)
    times = sorted({t for p in points for t in _times(p, "time")})
    # Along the timed points of each segment, on a sphere (no recording gaps in these).
    distance = 0.0
    for segment in re.findall(r"<trkseg>(.*?)</trkseg>", text, re.S):
        timed = [
            p for p in re.findall(r"<trkpt([^>]*)>(.*?)</trkpt>", segment, re.S) if "<time>" in p[1]
        ]
        spots = [
            (float(re.search(r'lat="([^"]+)"', a)[1]), float(re.search(r'lon="([^"]+)"', a)[1]))  # type: ignore[index]
            for a, _ in timed
        ]
        distance += sum(_sphere(*a, *b) for a, b in itertools.pairwise(spots))
    return {
        "samples": len(times),
        "duration": (times[-1] - times[0]).total_seconds(),
        "distance": distance,
    }


def _sphere(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def _real_files() -> dict[str, bytes]:
    return {name: real_fixture(name).read_bytes() for name in REAL_OUTCOMES}


# The real files -------------------------------------------------------------------------


def test_every_real_file_imports_or_fails_with_its_reason(
    channel: grpc.Channel, server: ServerThread
) -> None:
    files = _real_files()
    athlete = create_athlete(channel)
    job, events = import_and_watch(channel, athlete, "fixtures.zip", zip_of(files))

    assert job.state == SUCCEEDED, job.error
    failures = {name: r for name, r in REAL_OUTCOMES.items() if isinstance(r, str)}
    assert item_errors(events) == failures
    assert [e.progress.total for e in events if e.HasField("progress")][-1] == len(files)
    activities = all_activities(channel, athlete)
    by_file: dict[str, list[activity_pb2.Activity]] = {}
    digests = {sha256(data): name for name, data in files.items()}
    for activity in activities:
        by_file.setdefault(digests[activity.external_id.split("/")[0]], []).append(activity)
    expected_counts = {
        name: count
        for name, count in REAL_OUTCOMES.items()
        if isinstance(count, int) and name not in LINKED
    }
    assert {name: len(found) for name, found in by_file.items()} == expected_counts
    assert (job.result.created, job.result.skipped) == (sum(expected_counts.values()), 3)
    assert job.result.failed == len(failures)
    assert job.result.samples_written == sum(a.sample_count for a in activities)

    for name, (activity,) in ((n, a) for n, a in by_file.items() if len(a) == 1):
        expected = _expected(name, files[name])
        assert activity.sample_count == expected["samples"], name
        duration = activity.elapsed_time.ToTimedelta().total_seconds()
        assert duration == pytest.approx(expected["duration"], abs=1), name
        if "distance" in expected:
            assert activity.distance_meters == pytest.approx(expected["distance"], rel=0.01), name
    assert _staged(server) == []  # removed when the job ended


def test_the_edge_1000_ride_reads_the_same_in_gpx_tcx_and_fit() -> None:
    read = {}
    for name in (
        "gpx/ride_garmin-connect_edge1000_hr-cad-temp.gpx",
        "tcx/ride_edge1000_hr-cad-power_5laps.tcx",
        "fit/ride_edge1000_hr-cad-power.fit",
    ):
        (parsed,) = parse_file(name, real_fixture(name).read_bytes())
        read[name[:3]] = activity_from_file(parsed, None, "Europe/Amsterdam")[1]
    fit = read["fit"]
    for other in (read["gpx"], read["tcx"]):
        assert other.start_time == fit.start_time
        assert other.elapsed == fit.elapsed
        assert other.distance_meters == pytest.approx(fit.distance_meters, rel=0.01)
        assert other.moving == fit.moving


def test_the_same_upload_twice_at_once_stores_each_activity_once(
    channel: grpc.Channel,
) -> None:
    files = {
        name: real_fixture(name).read_bytes()
        for name in ("tcx/run_forerunner410_hr.tcx", "fit/run_stryd_hr-cad-power_devfields.fit")
    }
    data = zip_of(files)
    athlete = create_athlete(channel)
    with ThreadPoolExecutor(2) as pool:
        jobs = list(pool.map(lambda n: upload(channel, athlete, f"copy{n}.zip", data), range(2)))
    ended = [_ended(channel, job.name) for job in jobs]
    assert [job.state for job in ended] == [SUCCEEDED, SUCCEEDED]
    assert sum(job.result.created for job in ended) == 2
    assert sum(job.result.failed for job in ended) == 0
    assert len(all_activities(channel, athlete)) == 2


def test_the_multisport_file_gives_one_activity_per_sport(channel: grpc.Channel) -> None:
    name = "fit/multisport_fr935_run-rowing_no-gps.fit"
    athlete = create_athlete(channel)
    job, _ = import_and_watch(channel, athlete, "multi.fit", real_fixture(name).read_bytes())
    assert job.state == SUCCEEDED
    sports = sorted(a.sport_type for a in all_activities(channel, athlete))
    assert sports == sorted([common_pb2.SPORT_TYPE_RUN, common_pb2.SPORT_TYPE_ROWING])


def test_a_single_broken_file_fails_the_job_with_its_reason(
    channel: grpc.Channel, server: ServerThread
) -> None:
    athlete = create_athlete(channel)
    data = real_fixture("fit/corrupt_truncated-eof.fit").read_bytes()
    job, events = import_and_watch(channel, athlete, "broken.fit", data)
    assert job.state == FAILED
    assert "truncated" in job.error.message
    assert item_errors(events) == {"broken.fit": "FILE_CORRUPT"}
    assert [(i.item, i.error.code) for i in job.failed_items] == [("broken.fit", 3)]
    assert all_activities(channel, athlete) == []
    assert _staged(server) == []


def test_importing_the_same_files_again_creates_nothing(channel: grpc.Channel) -> None:
    files = {
        name: real_fixture(name).read_bytes()
        for name in ("gpx/run_garmin-connect_hr-cad.gpx", "fit/run_fenix2_hr-cad-temp.fit")
    }
    athlete = create_athlete(channel)
    first, _ = import_and_watch(channel, athlete, "two.zip", zip_of(files))
    assert (first.result.created, first.result.unchanged) == (2, 0)
    again, _ = import_and_watch(channel, athlete, "two-again.zip", zip_of(files))
    assert again.state == SUCCEEDED
    assert (again.result.created, again.result.unchanged, again.result.samples_written) == (0, 2, 0)
    # One of them on its own, as a plain file: still nothing new.
    alone, _ = import_and_watch(
        channel, athlete, "run.gpx", files["gpx/run_garmin-connect_hr-cad.gpx"]
    )
    assert (alone.result.created, alone.result.unchanged) == (0, 1)
    assert len(all_activities(channel, athlete)) == 2


def test_an_upload_matching_an_activity_from_another_source_is_linked(
    channel: grpc.Channel,
) -> None:
    athlete = create_athlete(channel)
    ride = real_fixture("fit/ride_edge1000_hr-cad-power.fit").read_bytes()
    expected = _expected("fit/ride_edge1000_hr-cad-power.fit", ride)
    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    manual = stub.CreateActivity(
        activity_pb2.CreateActivityRequest(
            parent=athlete,
            activity=activity_pb2.Activity(
                title="Typed in by hand",
                sport_type=common_pb2.SPORT_TYPE_RIDE,
                start_time=_timestamp(dt.datetime.fromtimestamp(expected["start"] + 40, dt.UTC)),
                elapsed_time=_duration(126),
                distance_meters=expected["distance"] * 1.015,
            ),
        )
    )
    job, _events = import_and_watch(channel, athlete, "ride.fit", ride)
    assert job.state == SUCCEEDED
    assert (job.result.created, job.result.skipped) == (0, 1)
    assert [a.name for a in all_activities(channel, athlete)] == [manual.name]


# Strava bulk exports -----------------------------------------------------------------------


def test_a_strava_export_of_500_activities_imports_watched_live_and_once(
    channel: grpc.Channel, server: ServerThread, tmp_path: Path
) -> None:
    # (Localized exports: tests/test_strava_export.py reads them without a server.)
    path = tmp_path / "export.zip"
    expected = strava_export(path, 500)
    athlete = create_athlete(channel)
    job = upload(channel, athlete, "export_4711.zip", path.read_bytes())
    events = watch(channel, job.name)  # from the first event, while the job runs

    assert [e.state for e in events][-1] == SUCCEEDED
    running = [e for e in events if e.state == job_pb2.JOB_STATE_RUNNING and e.item]
    assert len(running) == len(expected)  # one event per file (and per manual row)
    assert [e.progress.done for e in running] == list(range(1, len(expected) + 1))
    assert {e.progress.total for e in running} == {len(expected)}
    assert [e.result.created for e in running] == list(range(1, len(expected) + 1))
    assert not any(e.HasField("item_error") for e in events)

    stored = {a.start_time.ToDatetime(dt.UTC): a for a in all_activities(channel, athlete)}
    assert len(stored) == len(expected)
    for want in expected:
        got = stored[want.start_time]
        assert got.title == want.title
        assert got.sport_type == common_pb2.SportType.Value(_sport_enum(want.sport_type))
        assert got.sample_count == want.sample_count
        assert got.distance_meters == pytest.approx(want.distance_meters, rel=0.01)
        assert got.elapsed_time.ToTimedelta().total_seconds() == pytest.approx(
            want.elapsed_seconds, abs=1
        )

    again, _ = import_and_watch(channel, athlete, "export_4711.zip", path.read_bytes())
    assert (again.result.created, again.result.unchanged) == (0, len(expected))
    assert len(all_activities(channel, athlete)) == len(expected)
    assert _staged(server) == []


def _sport_enum(sport: str) -> str:
    return "SPORT_TYPE_" + re.sub(r"(?<=[a-z])(?=[A-Z])", "_", sport).upper()


def test_cancelling_an_import_stops_between_files_and_keeps_what_was_imported(
    channel: grpc.Channel, server: ServerThread, tmp_path: Path
) -> None:
    path = tmp_path / "export.zip"
    strava_export(path, 400)
    athlete = create_athlete(channel)
    job = upload(channel, athlete, "export.zip", path.read_bytes())
    jobs = job_pb2_grpc.JobServiceStub(channel)
    for event in jobs.WatchJob(job_pb2.WatchJobRequest(name=job.name), timeout=120):
        if event.progress.done >= 20:
            jobs.CancelJob(job_pb2.CancelJobRequest(name=job.name))
            break
    ended = _ended(channel, job.name)
    assert ended.state == job_pb2.JOB_STATE_CANCELLED
    kept = all_activities(channel, athlete)
    assert 20 <= len(kept) == ended.result.created < 400
    assert ended.progress.done == len(kept)
    assert _staged(server) == []


# Hostile archives ---------------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE gpx [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<gpx version="1.1" creator="x" xmlns="http://www.topografix.com/GPX/1/1"><trk><name>&secret;</name>
<trkseg><trkpt lat="1" lon="1"><time>2020-01-01T00:00:00Z</time></trkpt></trkseg></trk></gpx>"""
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><name>&lol9;</name>'
    b"</trk></gpx>"
)


def _huge_gpx(points: int) -> bytes:
    start = dt.datetime(2021, 3, 1, tzinfo=dt.UTC)
    rows = (
        f'<trkpt lat="{45 + i * 1e-5:.6f}" lon="7"><time>'
        f"{(start + dt.timedelta(seconds=i)).strftime('%Y-%m-%dT%H:%M:%SZ')}</time></trkpt>"
        for i in range(points)
    )
    return (
        '<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
        + "".join(rows)
        + "</trkseg></trk></gpx>"
    ).encode()


def _hostile_zip(good: bytes, fit: bytes) -> tuple[bytes, dict[str, str]]:
    """A zip holding one good file and one of each hostile entry; the reason each gets."""
    buffer = io.BytesIO()
    expected: dict[str, str] = {}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("activities/good.gpx", good)
        for name in ("../../escape.gpx", "/etc/absolute.gpx"):
            archive.writestr(name, good)
            expected[name] = "FILE_UNSAFE"
        link = zipfile.ZipInfo("activities/link.gpx")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        expected["activities/link.gpx"] = "FILE_UNSAFE"
        with archive.open("activities/bomb.gpx", "w") as bomb:  # 64 MiB of zeros: ~64 KiB
            for _ in range(64):
                bomb.write(bytes(2**20))
        expected["activities/bomb.gpx"] = "FILE_UNSAFE"
        archive.writestr("activities/xxe.gpx", XXE)
        expected["activities/xxe.gpx"] = "FILE_UNSAFE"
        archive.writestr("activities/laughs.gpx", LAUGHS)
        expected["activities/laughs.gpx"] = "FILE_UNSAFE"
        archive.writestr("activities/really-a-fit.gpx", fit)
        expected["activities/really-a-fit.gpx"] = "FILE_WRONG_TYPE"
        archive.writestr("activities/truncated.fit.gz", gzip.compress(fit)[:-200])
        expected["activities/truncated.fit.gz"] = "FILE_CORRUPT"
        archive.writestr("activities/garbage.fit", bytes(range(256)) * 40)
        expected["activities/garbage.fit"] = "FILE_WRONG_TYPE"
        archive.writestr("activities/nested.zip", zip_of({"inner.gpx": good}))
        expected["activities/nested.zip"] = "FILE_UNSUPPORTED"
        archive.writestr("activities/huge.gpx", _huge_gpx(500_001))
        expected["activities/huge.gpx"] = "FILE_TOO_LARGE"
    return buffer.getvalue(), expected


def test_hostile_entries_fail_alone_and_the_good_file_imports(tmp_path: Path) -> None:
    good = real_fixture("gpx/run_garmin-connect_hr-cad.gpx").read_bytes()
    fit = real_fixture("fit/run_fenix5_hr-cad_short.fit").read_bytes()
    data, expected = _hostile_zip(good, fit)
    settings = make_settings(tmp_path / "data", None)
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
        athlete = create_athlete(channel)
        job, events = import_and_watch(channel, athlete, "hostile.zip", data)
        assert job.state == SUCCEEDED, job.error
        assert item_errors(events) == expected
        assert (job.result.created, job.result.failed) == (1, len(expected))
        (activity,) = all_activities(channel, athlete)
        assert activity.external_id.startswith(sha256(good))
        assert "root:" not in activity.title  # no entity was expanded into it
        assert _staged(server) == []
        # The server is unharmed: the next upload imports as usual.
        again, _ = import_and_watch(channel, athlete, "fenix.fit", fit)
        assert again.result.created == 1


# Uploads that never become a job -----------------------------------------------------------


def test_an_upload_cut_off_mid_stream_leaves_no_job_and_no_file(
    channel: grpc.Channel, server: ServerThread
) -> None:
    athlete = create_athlete(channel)
    data = real_fixture("fit/run_fenix2_hr-cad-temp.fit").read_bytes()
    sent = threading.Event()

    def requests() -> Iterator[activity_pb2.UploadActivityFileRequest]:
        generated = upload_requests(athlete, "run.fit", data, chunk=16 * 1024)
        yield next(generated)
        yield next(generated)
        sent.set()
        threading.Event().wait(30)  # the client goes quiet, then is cancelled

    stub = activity_pb2_grpc.ActivityServiceStub(channel)
    call = stub.UploadActivityFile.future(requests())
    assert sent.wait(10)
    _wait_until(lambda: any(n.endswith(".part") for n in _staged(server)))
    call.cancel()  # type: ignore[no-untyped-call]
    _wait_until(lambda: _staged(server) == [])
    jobs = job_pb2_grpc.JobServiceStub(channel).ListJobs(job_pb2.ListJobsRequest(parent=athlete))
    assert list(jobs.jobs) == []


def test_upload_limits_are_checked_as_bytes_arrive(
    database_url: str | None, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path / "data",
        database_url,
        import_max_upload_bytes=200_000,
        import_max_file_bytes=100_000,
    )
    with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
        athlete = create_athlete(channel)
        # Declared too large: refused before a byte is taken.
        with pytest.raises(grpc.RpcError) as declared:
            upload(channel, athlete, "big.zip", b"PK\x03\x04" + b"x" * 10, size_bytes=300_000)
        assert declared.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(declared.value) == "UPLOAD_TOO_LARGE"
        assert "header.size_bytes" in violations(declared.value)
        # One file beyond the per-file limit, an archive beyond the per-upload limit.
        for name, data in (
            ("big.gpx", b"<gpx>" + b" " * 150_000),
            ("big.zip", b"PK\x03\x04" + b"x" * 250_000),
        ):
            with pytest.raises(grpc.RpcError) as streamed:
                upload(channel, athlete, name, data, chunk=50_000)
            assert streamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert reason(streamed.value) == "UPLOAD_TOO_LARGE"
        # Chunks above 1 MiB, an empty upload, a missing header, a lying size.
        bad_calls: list[tuple[list[activity_pb2.UploadActivityFileRequest], str]] = [
            (list(upload_requests(athlete, "a.gpx", b"x" * (2**20 + 1), chunk=2**20 + 1)), "chunk"),
            (list(upload_requests(athlete, "a.gpx", b"")), "chunk"),
            ([activity_pb2.UploadActivityFileRequest(chunk=b"<gpx/>")], "header"),
            (list(upload_requests(athlete, "a.gpx", b"<gpx/>", size_bytes=99)), "chunk"),
            (list(upload_requests(athlete, "", b"<gpx/>")), "header.file_name"),
        ]
        stub = activity_pb2_grpc.ActivityServiceStub(channel)
        for requests, field in bad_calls:
            with pytest.raises(grpc.RpcError) as bad:
                stub.UploadActivityFile(iter(requests), timeout=30)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert field in violations(bad.value), (field, violations(bad.value))
        # Over HTTP (UploadActivityFileBody) a declared size guards the same way.
        short_body = activity_pb2.UploadActivityFileBodyRequest(
            parent=athlete,
            file_name="a.gpx",
            size_bytes=999,
            body=httpbody_pb2.HttpBody(data=b"<gpx/>"),
        )
        with pytest.raises(grpc.RpcError) as short:
            stub.UploadActivityFileBody(iter([short_body]), timeout=30)
        assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "chunk" in violations(short.value)
        jobs = job_pb2_grpc.JobServiceStub(channel).ListJobs(
            job_pb2.ListJobsRequest(parent=athlete)
        )
        assert list(jobs.jobs) == []
        assert _staged(server) == []


def test_an_athlete_cannot_upload_for_another(channel: grpc.Channel, server: ServerThread) -> None:
    owner = create_athlete(channel, "Owner")
    other = create_athlete(channel, "Other")
    token = (
        athlete_pb2_grpc.AthleteServiceStub(channel)
        .CreateAccessToken(athlete_pb2.CreateAccessTokenRequest(parent=other))
        .token
    )
    data = real_fixture("gpx/track_empty-second-segment.gpx").read_bytes()
    with channel_as(server.address, token) as as_other:
        with pytest.raises(grpc.RpcError) as denied:
            upload(as_other, owner, "x.gpx", data)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        body = activity_pb2_grpc.ActivityServiceStub(as_other)
        with pytest.raises(grpc.RpcError) as denied_body:
            body.UploadActivityFileBody(
                iter([activity_pb2.UploadActivityFileBodyRequest(parent=owner, file_name="x.gpx")])
            )
        assert denied_body.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Its own upload works, over the HTTP-shaped method too.
        requests = [
            activity_pb2.UploadActivityFileBodyRequest(parent=other, file_name="x.gpx"),
            *(
                activity_pb2.UploadActivityFileBodyRequest(
                    body=httpbody_pb2.HttpBody(data=data[i : i + 500])
                )
                for i in range(0, len(data), 500)
            ),
        ]
        job = body.UploadActivityFileBody(iter(requests), timeout=30)
    ended = _ended(channel, job.name)
    assert ended.state == SUCCEEDED
    assert ended.result.created == 1
    assert all_activities(channel, owner) == []


def _ended(channel: grpc.Channel, name: str) -> job_pb2.Job:
    watch(channel, name)
    return job_pb2_grpc.JobServiceStub(channel).GetJob(job_pb2.GetJobRequest(name=name))


def _wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _duration(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds))

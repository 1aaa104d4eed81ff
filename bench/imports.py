"""File import throughput: a whole FILE_IMPORT job (UploadActivityFile of a zip, unpack,
parse, summarize, duplicate check, activity upsert, samples, training load, best efforts,
job events) through the real server, in files/s and samples/s stored, for GPX, TCX and FIT.

Input, generated in the run (seeded, deterministic): per format, `--files` files of
`--samples` points at 1 s (position, altitude, distance, heart rate, cadence; power on the
rides: every other file is a ride), each starting 6 h after the previous one so the
duplicate rule links none of them; one zip per format, stored (not deflated) so compression
costs nothing. FIT files come from tests/fit_writer.py (its altitude, cadence and power are
one value per file).

Baseline, same run, same files, in this process on one thread: `parse_file` +
`activity_from_file` for each file (what the job must do before it stores anything). The
ratio stored/parse-only is the share of the parse-only rate the whole job keeps.

Measured: the embedded default (SQLite, in-process workers) always; PostgreSQL (COPY for
samples, in-process workers, a throwaway database dropped after) when it answers on
127.0.0.1:5432. One server per database, one athlete per format. Job time is the job's
start_time to end_time (GetJob); wall time adds the upload and the watch. Every import is
checked (created == files, samples_written == files * samples) and re-imported: the second
job must create nothing (the files are still read and parsed, nothing is written).

`python -m bench --only imports` or
`python -m bench.imports [--files N] [--samples S] [--formats gpx,tcx,fit] [--profile FMT]`.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import math
import pstats
import random
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import grpc
    from stride.v1 import job_pb2

FORMATS = ("gpx", "tcx", "fit")
FIRST_START = dt.datetime(2025, 3, 1, 6, 0, tzinfo=dt.UTC)
GAP = dt.timedelta(hours=6)  # between files' starts: far outside the duplicate window
LAT0, LON0 = 59.91, 10.75  # Oslo
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Options:
    files: int = 30
    samples: int = 3600  # 1 h at 1 s
    formats: tuple[str, ...] = FORMATS
    postgres: bool = True
    profile: str = ""  # "fit", "gpx" or "tcx": cProfile the stored import of that format


class Point(NamedTuple):
    seconds: int
    lat: float
    lon: float
    distance: float
    altitude: float
    heart_rate: int
    cadence: int
    power: int | None


@dataclass(frozen=True)
class Track:
    start: dt.datetime
    ride: bool
    points: list[Point]


# ---------------------------------------------------------------------------- input files


def tracks(options: Options) -> list[Track]:
    """`files` tracks: a loop around Oslo at a wobbling speed; even ones runs, odd ones rides."""
    rng = random.Random(2026)
    found = []
    for index in range(options.files):
        ride = index % 2 == 1
        base_speed = rng.uniform(7.0, 9.0) if ride else rng.uniform(2.8, 3.6)
        radius = base_speed * options.samples / (2 * math.pi)
        heading = rng.uniform(0, 2 * math.pi)
        points = []
        distance = angle = 0.0
        for t in range(options.samples):
            speed = base_speed * (1 + 0.08 * math.sin(t / 170) + rng.uniform(-0.02, 0.02))
            if t:
                distance += speed
                angle += speed / radius
            north = radius * (math.sin(heading + angle) - math.sin(heading))
            east = radius * (math.cos(heading + angle) - math.cos(heading))
            lat = LAT0 + north / METRES_PER_DEGREE
            lon = LON0 + east / (METRES_PER_DEGREE * math.cos(math.radians(LAT0)))
            points.append(
                Point(t, round(lat, 7), round(lon, 7), round(distance, 2),
                      round(80 + 25 * math.sin(t / 600), 1),
                      int(130 + 12 * (speed / base_speed) + 15 * t / options.samples),
                      int((88 if ride else 86) + rng.uniform(-3, 3)),
                      int(210 + 40 * math.sin(t / 90) + rng.uniform(-15, 15)) if ride else None)
            )  # fmt: skip
        found.append(Track(FIRST_START + index * GAP, ride, points))
    return found


def _iso(start: dt.datetime, seconds: int) -> str:
    return (start + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def gpx_file(track: Track) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="stride-bench" xmlns="http://www.topografix.com/GPX/1/1"'
        ' xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n'
        f"<metadata><time>{_iso(track.start, 0)}</time></metadata>\n"
        f"<trk><name>Bench {'ride' if track.ride else 'run'}</name>"
        f"<type>{'cycling' if track.ride else 'running'}</type><trkseg>\n"
    ]
    for p in track.points:
        power = "" if p.power is None else f"<power>{p.power}</power>"
        parts.append(
            f'<trkpt lat="{p.lat}" lon="{p.lon}"><ele>{p.altitude}</ele>'
            f"<time>{_iso(track.start, p.seconds)}</time><extensions>{power}"
            f"<gpxtpx:TrackPointExtension><gpxtpx:hr>{p.heart_rate}</gpxtpx:hr>"
            f"<gpxtpx:cad>{p.cadence}</gpxtpx:cad></gpxtpx:TrackPointExtension>"
            "</extensions></trkpt>\n"
        )
    parts.append("</trkseg></trk>\n</gpx>\n")
    return "".join(parts).encode()


def tcx_file(track: Track) -> bytes:
    start = _iso(track.start, 0)
    last = track.points[-1]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"'
        ' xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">\n'
        f'<Activities><Activity Sport="{"Biking" if track.ride else "Running"}"><Id>{start}</Id>\n'
        f'<Lap StartTime="{start}"><TotalTimeSeconds>{last.seconds}</TotalTimeSeconds>'
        f"<DistanceMeters>{last.distance}</DistanceMeters><Intensity>Active</Intensity>"
        "<TriggerMethod>Manual</TriggerMethod><Track>\n"
    ]
    previous: Point | None = None
    for p in track.points:
        speed = 0.0 if previous is None else round(p.distance - previous.distance, 3)
        previous = p
        cadence = f"<Cadence>{p.cadence}</Cadence>" if track.ride else ""
        extra = f"<ns3:Watts>{p.power}</ns3:Watts>" if p.power is not None else ""
        if not track.ride:
            extra += f"<ns3:RunCadence>{p.cadence}</ns3:RunCadence>"
        parts.append(
            f"<Trackpoint><Time>{_iso(track.start, p.seconds)}</Time><Position>"
            f"<LatitudeDegrees>{p.lat}</LatitudeDegrees><LongitudeDegrees>{p.lon}"
            f"</LongitudeDegrees></Position><AltitudeMeters>{p.altitude}</AltitudeMeters>"
            f"<DistanceMeters>{p.distance}</DistanceMeters><HeartRateBpm><Value>{p.heart_rate}"
            f"</Value></HeartRateBpm>{cadence}<Extensions><ns3:TPX><ns3:Speed>{speed}</ns3:Speed>"
            f"{extra}</ns3:TPX></Extensions></Trackpoint>\n"
        )
    parts.append(
        "</Track></Lap><Creator><Name>Stride bench</Name></Creator></Activity></Activities>\n"
        "</TrainingCenterDatabase>\n"
    )
    return "".join(parts).encode()


def fit_file(track: Track) -> bytes:
    from tests.fit_writer import fit_activity

    points = [(float(p.seconds), p.lat, p.lon, p.distance, p.heart_rate) for p in track.points]
    powers = [p.power for p in track.points if p.power is not None]
    return fit_activity(
        track.start, points, sport="cycling" if track.ride else "running",
        altitude=track.points[0].altitude, cadence=track.points[0].cadence,
        power=round(sum(powers) / len(powers)) if powers else None,
    )  # fmt: skip


WRITERS: dict[str, Callable[[Track], bytes]] = {"gpx": gpx_file, "tcx": tcx_file, "fit": fit_file}


def files_of(file_format: str, all_tracks: list[Track]) -> dict[str, bytes]:
    write = WRITERS[file_format]
    return {f"bench-{index:03d}.{file_format}": write(t) for index, t in enumerate(all_tracks)}


def stored_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Parsed:
    seconds: float
    files: int
    samples: int


def parse_only(files: dict[str, bytes]) -> Parsed:
    """The baseline: what the job does to a file before it stores anything."""
    from domain.files.detect import parse_file
    from domain.imports import activity_from_file

    started = time.perf_counter()
    samples = 0
    for name, data in files.items():
        for activity in parse_file(name, data):
            activity_from_file(activity, None, "Europe/Oslo")
            samples += len(activity.samples)
    return Parsed(time.perf_counter() - started, len(files), samples)


@dataclass(frozen=True)
class Imported:
    job_seconds: float  # the job's start_time to end_time
    wall_seconds: float  # upload start to the watch's last event
    created: int
    unchanged: int
    samples_written: int


def _import(channel: grpc.Channel, athlete: str, name: str, data: bytes) -> Imported:
    from stride.v1 import job_pb2, job_pb2_grpc

    from tests.import_flow import upload
    from tests.strava_flow import watch

    started = time.perf_counter()
    job = upload(channel, athlete, name, data)
    events = watch(channel, job.name, timeout=600)
    wall = time.perf_counter() - started
    ended: job_pb2.Job = job_pb2_grpc.JobServiceStub(channel).GetJob(
        job_pb2.GetJobRequest(name=job.name)
    )
    if ended.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"the import of {name} ended {events[-1].state}: {ended.error}")
    seconds = (ended.end_time.ToDatetime() - ended.start_time.ToDatetime()).total_seconds()
    result = ended.result
    return Imported(seconds, wall, int(result.created), int(result.unchanged),
                    int(result.samples_written))  # fmt: skip


@dataclass(frozen=True)
class Case:
    database: str
    file_format: str
    zip_bytes: int
    parsed: Parsed
    first: Imported
    again: Imported

    def problems(self, options: Options) -> list[str]:
        wanted = options.files * options.samples
        found = []
        if self.parsed.samples != wanted:
            found.append(f"parsed {self.parsed.samples} samples, not {wanted}")
        if self.first.created != options.files:
            found.append(f"created {self.first.created}, not {options.files}")
        if self.first.samples_written != wanted:
            found.append(f"wrote {self.first.samples_written} samples, not {wanted}")
        if self.again.created or self.again.samples_written:
            found.append(f"re-import created {self.again.created}")
        if self.again.unchanged != options.files:
            found.append(f"re-import found {self.again.unchanged} unchanged")
        return found


@contextmanager
def _server(database_url: str | None) -> Iterator[grpc.Channel]:
    from tests.support import ADMIN_TOKEN, ServerThread, channel_as, make_settings

    with tempfile.TemporaryDirectory() as workdir:
        settings = make_settings(Path(workdir), database_url, inprocess_workers=True,
                                 log_level="WARNING")  # fmt: skip
        with ServerThread(settings) as server, channel_as(server.address, ADMIN_TOKEN) as channel:
            yield channel


def profile_store(database: str, url: str, files: dict[str, bytes]) -> None:
    """cProfile of the job's own calls for each file (parse_file, activity_from_file,
    FileActivities.store), on this thread against a fresh database: in the server they run
    on a worker thread, which cProfile (per thread on Python 3.11) would not see."""
    from domain.athletes import AthleteProfile
    from domain.files.detect import parse_file
    from domain.imports import DuplicateRule, activity_from_file
    from services.imports import FileActivities
    from storage import migrate
    from storage.database import Database, PoolOptions
    from storage.repositories.athletes import AthleteRepository

    db = Database(url, [], PoolOptions(size=1, max_overflow=0))
    migrate.upgrade(db.primary)
    with db.transaction() as session:
        athlete = AthleteRepository(session).add(
            AthleteProfile(display_name="Profiled", time_zone="Europe/Oslo"), None
        )
    activities = FileActivities(db, DuplicateRule())
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    written = 0
    for name, data in files.items():
        for index, parsed in enumerate(parse_file(name, data)):
            edit, measurements = activity_from_file(parsed, None, "Europe/Oslo")
            stored = activities.store(athlete.id, f"{name}/{index}", edit, measurements,
                                      {"file": name}, parsed.samples, "profile")  # fmt: skip
            written += stored.samples_written
    profile.disable()
    seconds = time.perf_counter() - started
    db.dispose()
    print(
        f"\n  cProfile, {database}: {len(files)} files, {written} samples stored on this thread"
        f" in {seconds:.2f} s under the profiler ({written / seconds:,.0f} samples/s)"
    )
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    root = str(Path(__file__).resolve().parent.parent) + "/"
    for line in stream.getvalue().splitlines():
        if line.strip():
            print("    " + line.replace(root, ""))


def measure_database(database: str, url: str | None, inputs: dict[str, dict[str, bytes]],
                     zips: dict[str, bytes], options: Options) -> list[Case]:  # fmt: skip
    from tests.strava_flow import create_athlete

    cases = []
    # The baselines first, with no server running in the process.
    parsed = {fmt: parse_only(files) for fmt, files in inputs.items()}
    with _server(url) as channel:
        for fmt, data in zips.items():
            athlete = create_athlete(channel, f"Bench {fmt}")
            first = _import(channel, athlete, f"bench-{fmt}.zip", data)
            again = _import(channel, athlete, f"bench-{fmt}.zip", data)
            cases.append(Case(database, fmt, len(data), parsed[fmt], first, again))
    return cases


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds:9,.0f}" if seconds > 0 else "        -"


def print_table(cases: list[Case], options: Options) -> None:
    print(
        f"  {'database':<10} {'fmt':<4} {'zip MB':>6} {'files':>5} {'samples':>8}"
        f" {'parse-only':>11} {'stored':>10} {'ratio':>6} {'files/s':>8}"
        f" {'job s':>6} {'wall s':>6} {'re-import s':>11}"
    )
    print(f"  {'':<10} {'':<4} {'':>6} {'':>5} {'':>8} {'samples/s':>11} {'samples/s':>10}")
    for case in cases:
        first = case.first
        stored = first.samples_written / first.job_seconds
        parse_rate = case.parsed.samples / case.parsed.seconds
        print(
            f"  {case.database:<10} {case.file_format:<4} {case.zip_bytes / 2**20:6.1f}"
            f" {first.created:>5} {first.samples_written:>8} {parse_rate:>11,.0f}"
            f" {stored:>10,.0f} {stored / parse_rate:6.2f}"
            f" {_rate(first.created, first.job_seconds)}"
            f" {first.job_seconds:6.2f} {first.wall_seconds:6.2f} {case.again.job_seconds:11.2f}"
        )
        for problem in case.problems(options):
            print(f"    WRONG: {problem}")


def run(options: Options | None = None) -> None:
    from core.logging import configure_logging
    from tests.support import postgres_available, postgres_database

    options = options or Options()
    # The servers run in this process: their info lines (tasks, access) stay out of the table.
    configure_logging("WARNING", "console", sys.stderr)
    print(
        f"File import: {options.files} files x {options.samples} samples per format, one"
        " stored zip each, UploadActivityFile -> FILE_IMPORT SUCCEEDED; baseline: parse_file +"
        " activity_from_file of the same files in this process"
    )
    started = time.perf_counter()
    all_tracks = tracks(options)
    inputs = {fmt: files_of(fmt, all_tracks) for fmt in options.formats}
    zips = {fmt: stored_zip(files) for fmt, files in inputs.items()}
    print(f"  (inputs generated in {time.perf_counter() - started:.1f} s)")
    cases = measure_database("SQLite", None, inputs, zips, options)
    with_postgres = options.postgres and postgres_available()
    if with_postgres:
        with postgres_database() as url:
            cases += measure_database("PostgreSQL", url, inputs, zips, options)
    elif options.postgres:
        print("  (PostgreSQL not reachable on 127.0.0.1:5432: SQLite only)")
    print_table(cases, options)
    if options.profile:
        files = inputs.get(options.profile) or files_of(options.profile, all_tracks)
        with tempfile.TemporaryDirectory() as workdir:
            profile_store("SQLite", f"sqlite:///{workdir}/profile.db", files)
        if with_postgres:
            with postgres_database() as url:
                profile_store("PostgreSQL", url, files)
    print(
        "  stored samples/s = samples_written / (job end_time - start_time); ratio ="
        " stored / parse-only; wall s includes the upload; re-import s is the second job"
        " (creates nothing)"
    )
    print(f"  (whole bench {time.perf_counter() - started:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m bench.imports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--files", type=int, default=defaults.files, help="files per format")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="points per file")
    parser.add_argument("--formats", default=",".join(defaults.formats),
                        help="comma-separated, of: gpx, tcx, fit")  # fmt: skip
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--profile", default="", choices=("", *FORMATS),
                        help="after the table, cProfile storing this format's files"
                             " (the job's calls, on the main thread; each database)")  # fmt: skip
    args = parser.parse_args(argv)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        parser.error(f"unknown format(s): {', '.join(unknown) or '(none)'}")
    if args.files < 1 or args.samples < 2:
        parser.error("--files must be >= 1 and --samples >= 2")
    run(Options(args.files, args.samples, formats, not args.no_postgres, args.profile))


if __name__ == "__main__":
    main()

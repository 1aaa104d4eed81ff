"""The `stride` command line, run as a subprocess against a real server (SQLite, workers
in-process): athletes, imports with live progress, lists, analytics, tokens, `--json`,
errors and exit codes; and, against a fake stub, a watch that reconnects after its stream
breaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import grpc
import pytest
from click.testing import CliRunner
from stride.v1 import job_pb2

from cli.commands.imports import plan
from cli.connection import resolve_address, resolve_token
from cli.main import stride
from cli.output import Output
from cli.watch import JobWatcher, job_events
from domain.files.archive import open_upload
from tests.import_flow import zip_of
from tests.netfaults import TcpProxy
from tests.support import ADMIN_TOKEN, ROOT, ServerThread, make_settings, real_fixture

GPX = "gpx/run_garmin-connect_hr-cad.gpx"
ZIPPED = [
    "tcx/run_forerunner410_hr.tcx",
    "fit/run_fenix5_hr-cad_short.fit",
    "fit/ride_edge1000_hr-cad-power.fit",
    "gpx/malformed_bad-character.gpx",  # fails alone, with its reason
]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    data = tmp_path_factory.mktemp("cli") / "data"
    with ServerThread(make_settings(data, None)) as running:
        yield running


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIDE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen")])
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def stride_cli(server: ServerThread, *args: str, cwd: Path | None = None, **env: str) -> Run:
    values = {"STRIDE_CLI_ADDRESS": server.address, "STRIDE_CLI_TOKEN": ADMIN_TOKEN, **env}
    values = {k: v for k, v in values.items() if v}
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=cli_env(**values),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def test_people_use_it_end_to_end(server: ServerThread, tmp_path: Path) -> None:
    created = stride_cli(
        server,
        "athletes",
        "create",
        "--name",
        "Ada Lovelace",
        "--time-zone",
        "Europe/London",
        "--birth-date",
        "1985-06-01",
        "--sex",
        "female",
        "--json",
    )
    assert created.code == 0, created.err
    athlete = created.json()
    name = athlete["name"]
    assert athlete["display_name"] == "Ada Lovelace"
    assert athlete["time_zone"] == "Europe/London"
    athlete_id = name.removeprefix("athletes/")

    listed = stride_cli(server, "athletes", "list", "--json")
    assert name in [a["name"] for a in listed.json()["athletes"]]
    shown = stride_cli(server, "athletes", "get", athlete_id)
    assert shown.code == 0, shown.err
    assert "Ada Lovelace" in shown.out
    assert "Europe/London" in shown.out

    # One file, stdout not a terminal: plain progress lines, per file, and a summary.
    gpx = real_fixture(GPX)
    one = stride_cli(server, "import", str(gpx), "--athlete", athlete_id)
    assert one.code == 0, one.out + one.err
    assert "1/1 done" in one.out
    assert "created 1" in one.out
    assert "succeeded" in one.out

    # A zip with a broken file, with the live bar forced: it reaches 100 % and the
    # failed file's reason is printed as it arrives.
    archive = tmp_path / "export.zip"
    archive.write_bytes(zip_of({Path(n).name: real_fixture(n).read_bytes() for n in ZIPPED}))
    bar = stride_cli(server, "import", str(archive), "--progress", STRIDE_CLI_ATHLETE=name)
    assert bar.code == 0, bar.out + bar.err
    assert "\x1b[" in bar.out  # a live terminal display
    assert "100%" in bar.out
    assert "4/4" in bar.out
    assert "malformed_bad-character.gpx failed" in bar.out
    assert "FILE_CORRUPT" in bar.out
    assert "created 3" in bar.out
    assert "failed 1" in bar.out

    # --json: JSON lines, the upload then every event; the last one ends the job.
    again = stride_cli(server, "import", str(gpx), "--athlete", name, "--json")
    assert again.code == 0, again.err
    lines = again.lines()
    assert lines[0]["uploaded"] is True
    job_name = lines[0]["job"]
    assert lines[-1]["state"] == "JOB_STATE_SUCCEEDED"
    assert lines[-1]["result"].get("unchanged") == "1"  # the same bytes: nothing twice
    sequences = [int(line["sequence"]) for line in lines[1:]]
    assert sequences == sorted(set(sequences))

    activities = stride_cli(server, "activities", "list", "-a", athlete_id, "--json")
    found = activities.json()["activities"]
    assert len(found) == 4  # the GPX, then the TCX and two FIT files of the zip
    run_id = next(a["name"] for a in found if a["sport_type"] == "SPORT_TYPE_RUN")
    runs = stride_cli(server, "activities", "list", "-a", athlete_id, "--sport", "run", "--json")
    assert {a["sport_type"] for a in runs.json()["activities"]} == {"SPORT_TYPE_RUN"}
    ranged = stride_cli(
        server, "activities", "list", "-a", athlete_id, "--from", "2999-01-01", "--json"
    )
    assert ranged.json()["activities"] == []
    table = stride_cli(server, "activities", "list", "-a", athlete_id, "--limit", "2")
    assert table.code == 0
    assert "Activities" in table.out
    assert "km" in table.out
    assert "more activities" in table.err
    one_activity = stride_cli(server, "activities", "get", run_id)
    assert one_activity.code == 0
    assert "pace" in one_activity.out

    starts = sorted(a["start_time"][:10] for a in found)
    summary = stride_cli(
        server,
        "summaries",
        "-a",
        athlete_id,
        "--period",
        "month",
        "--from",
        starts[0],
        "--to",
        starts[-1],
        "--json",
    )
    assert summary.code == 0, summary.err
    periods = summary.json()["periods"]
    assert sum(p["totals"].get("activity_count", 0) for p in periods) == 4
    weekly = stride_cli(server, "summaries", "-a", athlete_id, "--from", starts[-1])
    assert weekly.code == 0
    assert "Training per week (Europe/London)" in weekly.out

    records = stride_cli(server, "records", "-a", athlete_id, "--json")
    assert records.code == 0, records.err
    assert "personal_records" in records.json()
    assert stride_cli(server, "records", "-a", athlete_id).code == 0

    graded = stride_cli(
        server,
        "age-grade",
        "--distance",
        "10k",
        "--time",
        "41:30",
        "--age",
        "52",
        "--sex",
        "female",
        "--json",
    )
    assert graded.code == 0, graded.err
    assert 80 < graded.json()["age_graded_percent"] < 100
    by_athlete = stride_cli(
        server, "age-grade", "-a", athlete_id, "--distance", "5k", "--time", "22:00"
    )
    assert by_athlete.code == 0
    assert "age grade" in by_athlete.out

    jobs = stride_cli(server, "jobs", "list", "-a", athlete_id, "--json")
    assert {j["state"] for j in jobs.json()["jobs"]} == {"JOB_STATE_SUCCEEDED"}
    assert len(jobs.json()["jobs"]) == 3
    job = stride_cli(server, "jobs", "get", job_name)
    assert job.code == 0
    assert "file import" in job.out
    watched = stride_cli(server, "jobs", "watch", job_name.rsplit("/", 1)[1], "-a", athlete_id)
    assert watched.code == 0
    assert "succeeded" in watched.out

    token = stride_cli(server, "token", "create", "-a", athlete_id, "--name", "watch", "--json")
    assert token.code == 0, token.err
    secret, token_name = token.json()["token"], token.json()["name"]
    own = stride_cli(server, "athletes", "get", athlete_id, "--json", STRIDE_CLI_TOKEN=secret)
    assert own.json()["name"] == name
    tokens = stride_cli(server, "token", "list", "-a", athlete_id, "--json")
    assert [t["name"] for t in tokens.json()["access_tokens"]] == [token_name]
    assert "token" not in tokens.json()["access_tokens"][0]
    revoked = stride_cli(server, "token", "revoke", token_name)
    assert revoked.code == 0
    assert token_name in revoked.out
    refused = stride_cli(server, "athletes", "get", athlete_id, "--token", secret)
    assert refused.code == 1
    assert "UNAUTHENTICATED" in refused.err

    # Several files at once: bundled into one upload, so one job counts them all.
    both = stride_cli(server, "import", str(gpx), str(real_fixture(ZIPPED[0])), "-a", name)
    assert both.code == 0, both.out + both.err
    assert "2 files: succeeded, 2/2 done" in both.out
    assert "unchanged 2" in both.out  # both were imported before


def test_errors_say_what_is_wrong(server: ServerThread) -> None:
    # Usage errors: click's message, exit code 2, nothing sent.
    bad = stride_cli(server, "activities", "list", "-a", "1", "--sport", "quidditch")
    assert bad.code == 2
    assert "Invalid value for '--sport'" in bad.err
    assert "unknown sport 'quidditch'" in bad.err
    no_athlete = stride_cli(server, "activities", "list")
    assert no_athlete.code == 2
    assert "no athlete" in no_athlete.err
    bad_date = stride_cli(server, "summaries", "-a", "1", "--from", "yesterday")
    assert bad_date.code == 2
    assert "YYYY-MM-DD" in bad_date.err
    unknown = stride_cli(server, "athletes", "frobnicate")
    assert unknown.code == 2
    assert "No such command" in unknown.err

    # RPC errors: the status, the reason, every field violation; exit code 1.
    missing = stride_cli(server, "athletes", "get", "athletes/999999")
    assert missing.code == 1
    assert "NOT_FOUND" in missing.err
    assert "reason " in missing.err
    paged = stride_cli(server, "athletes", "list", "--page-size", "-5")
    assert paged.code == 1
    assert "INVALID_ARGUMENT" in paged.err
    assert "page_size:" in paged.err
    as_json = stride_cli(server, "athletes", "list", "--page-size", "-5", "--json")
    error = json.loads(as_json.err)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["reason"]
    assert [v["field"] for v in error["field_violations"]] == ["page_size"]
    unauthenticated = stride_cli(server, "athletes", "list", STRIDE_CLI_TOKEN="")
    assert unauthenticated.code == 1
    assert "UNAUTHENTICATED" in unauthenticated.err
    no_sync = stride_cli(server, "sync", "-a", "athletes/999999")  # no Strava app here
    assert no_sync.code == 1
    assert "FAILED_PRECONDITION" in no_sync.err
    assert "reason STRAVA_NOT_CONFIGURED" in no_sync.err


def test_watch_waits_for_the_server_to_come_back(server: ServerThread) -> None:
    """A real UNAVAILABLE: the server is unreachable when the watch starts, then back."""
    athlete = stride_cli(
        server, "athletes", "create", "--name", "Bo", "--time-zone", "UTC", "--json"
    )
    name = athlete.json()["name"]
    started = stride_cli(server, "import", str(real_fixture(GPX)), "-a", name, "--json")
    job = started.lines()[0]["job"]
    proxy = TcpProxy(int(server.address.rsplit(":", 1)[1]))  # not listening yet
    watch = subprocess.Popen(
        [sys.executable, "-m", "cli", "jobs", "watch", job, "--json"],
        env=cli_env(STRIDE_CLI_ADDRESS=f"127.0.0.1:{proxy.port}", STRIDE_CLI_TOKEN=ADMIN_TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stderr is not None
        line = watch.stderr.readline()  # the first attempt failed: it says so and waits
        assert "UNAVAILABLE" in line
        assert "reconnecting after event 0" in line
        proxy.restore()
        out, err = watch.communicate(timeout=30)
    finally:
        watch.kill()
        proxy.cut()
    assert watch.returncode == 0, err
    events = [json.loads(text) for text in out.splitlines()]
    sequences = [int(event["sequence"]) for event in events]
    assert sequences == list(range(1, len(sequences) + 1))
    assert events[-1]["state"] == "JOB_STATE_SUCCEEDED"


def test_address_and_token_from_the_servers_settings(server: ServerThread, tmp_path: Path) -> None:
    """No CLI variables: STRIDE_LISTEN_ADDRESS and the data directory's admin_token file."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin_token").write_text(ADMIN_TOKEN + "\n")
    port = server.address.rsplit(":", 1)[1]
    listed = stride_cli(
        server,
        "athletes",
        "list",
        "--json",
        cwd=tmp_path,
        STRIDE_CLI_ADDRESS="",
        STRIDE_CLI_TOKEN="",
        STRIDE_LISTEN_ADDRESS=f"0.0.0.0:{port}",
        STRIDE_DATA_DIR=str(data),
    )
    assert listed.code == 0, listed.err
    assert "athletes" in listed.json()


def test_resolution_order() -> None:
    env = {"STRIDE_LISTEN_ADDRESS": "[::]:7000", "STRIDE_DATA_DIR": "/nonexistent"}
    assert resolve_address(None, env, {}) == "127.0.0.1:7000"
    assert resolve_address(None, {**env, "STRIDE_CLI_ADDRESS": "h:1"}, {}) == "h:1"
    assert resolve_address("flag:2", {**env, "STRIDE_CLI_ADDRESS": "h:1"}, {}) == "flag:2"
    assert resolve_address(None, {}, {"STRIDE_LISTEN_ADDRESS": "10.0.0.1:9"}) == "10.0.0.1:9"
    assert resolve_address(None, {}, {}) == "127.0.0.1:50051"
    assert resolve_token(None, env, {}) is None
    assert resolve_token(None, {**env, "STRIDE_ADMIN_TOKEN": "adm"}, {}) == "adm"
    assert (
        resolve_token(None, {**env, "STRIDE_CLI_TOKEN": "cli"}, {"STRIDE_ADMIN_TOKEN": "a"})
        == "cli"
    )
    assert resolve_token("flag", {"STRIDE_CLI_TOKEN": "cli"}, {}) == "flag"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield (*prefix, name)
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_help_everywhere() -> None:
    runner = CliRunner()
    top = runner.invoke(stride, ["--help"])
    assert top.exit_code == 0
    assert "--json" in top.output
    paths = list(_commands(stride))
    assert len(paths) >= 20
    for path in paths:
        result = runner.invoke(stride, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: stride {' '.join(path)}" in result.output
        command: click.Command = stride
        for part in path:
            assert isinstance(command, click.Group)
            command = command.commands[part]
        if not isinstance(command, click.Group):
            assert "--json" in result.output, path


# --- the watch reconnects ------------------------------------------------------------


class Broken(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection reset"


def _event(
    sequence: int, done: int, state: job_pb2.JobState.ValueType = job_pb2.JOB_STATE_RUNNING
) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(
        sequence=sequence,
        state=state,
        progress=job_pb2.JobProgress(total=3, done=done),
        result=job_pb2.JobResult(created=done),
    )


class FlakyStub:
    """The first stream breaks after two events; the second replays one of them."""

    def __init__(self) -> None:
        self.requests: list[job_pb2.WatchJobRequest] = []

    def WatchJob(  # noqa: N802
        self, request: job_pb2.WatchJobRequest, **_: Any
    ) -> Iterator[job_pb2.JobEvent]:
        self.requests.append(request)
        if len(self.requests) == 1:
            return self._first()
        if len(self.requests) == 2:
            raise Broken()  # the server is still down: try again
        return iter(
            [
                _event(2, 2),  # sent again all the same: dropped
                job_pb2.JobEvent(sequence=2, heartbeat=True, state=job_pb2.JOB_STATE_RUNNING),
                _event(3, 3, job_pb2.JOB_STATE_SUCCEEDED),
            ]
        )

    def _first(self) -> Iterator[job_pb2.JobEvent]:
        yield _event(1, 1)
        yield _event(2, 2)
        raise Broken()


def test_watch_resumes_after_the_last_sequence() -> None:
    stub = FlakyStub()
    seen: list[int] = []
    events = list(
        job_events(
            stub,
            "athletes/1/jobs/2",
            sleep=lambda _: None,
            on_reconnect=lambda last, _: seen.append(last),
        )
    )
    assert [r.after_sequence for r in stub.requests] == [0, 2, 2]
    assert seen == [2, 2]
    assert [e.sequence for e in events if not e.heartbeat] == [1, 2, 3]
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED


def test_watch_display_survives_a_break(capsys: pytest.CaptureFixture[str]) -> None:
    stub = FlakyStub()
    output = Output(as_json=True)
    with JobWatcher(output, stub, ()) as watcher:  # backs off 0.25 s, then 0.5 s
        outcome = watcher.watch("athletes/1/jobs/2", "export.zip")
    assert outcome.ok
    assert outcome.result.created == 3
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["sequence"] for line in lines] == ["1", "2", "3"]
    assert "reconnecting after event 2" in captured.err


def test_other_errors_end_the_watch() -> None:
    class Denied(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.PERMISSION_DENIED

    class Stub:
        def WatchJob(self, request: Any, **_: Any) -> Iterator[job_pb2.JobEvent]:  # noqa: N802
            raise Denied()

    with pytest.raises(Denied):
        list(job_events(Stub(), "athletes/1/jobs/2", sleep=lambda _: None))


def test_files_of_the_same_name_are_bundled_under_names_the_server_imports(
    tmp_path: Path,
) -> None:
    files = []
    for folder, name in (("a", "run.gpx.gz"), ("b", "run.gpx.gz"), ("c", "Run.GPX.gz")):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / name)
        files[-1].write_bytes(b"x")
    (bundle,) = plan(files, tmp_path)
    with zipfile.ZipFile(bundle.path) as archive:
        names = archive.namelist()
    assert names == ["run.gpx.gz", "run-2.gpx.gz", "Run-3.GPX.gz"]
    with open_upload(bundle.path, bundle.file_name) as upload:  # the server's own reading
        assert [(item.name, item.error) for item in upload.items] == [
            ("Run-3.GPX.gz", None),
            ("run-2.gpx.gz", None),
            ("run.gpx.gz", None),
        ]

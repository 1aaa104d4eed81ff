"""Servers under test as separate processes, so the load generator does not share their GIL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "stride_admin_bench-token"
ADMIN_METADATA: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIDE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen")])
    env.update(extra)
    return env


@contextmanager
def _process(args: list[str], env: dict[str, str], read_port: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stream = process.stdout if read_port == "stdout" else process.stderr
        assert stream is not None
        port = None
        for line in stream:
            if read_port == "stdout":
                port = line.strip()
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "server started":
                port = str(event["port"])
                break
        if port is None:
            raise RuntimeError(f"server did not start (exit {process.wait()})")
        # Keep draining the pipe so a chatty server never blocks on a full buffer.
        threading.Thread(target=stream.read, daemon=True).start()
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def stride_server(settings: dict[str, str], module: str = "server") -> Iterator[str]:
    """`module` is `server`, or `bench.plain_server` for the same server without interceptors."""
    env = {
        "STRIDE_LISTEN_ADDRESS": "127.0.0.1:0",
        "STRIDE_METRICS_ADDRESS": "off",
        "STRIDE_LOG_FORMAT": "json",
        "STRIDE_ADMIN_TOKEN": ADMIN_TOKEN,
        "STRIDE_SECRET_KEY": "bench-secret",  # required with PostgreSQL
        # Limits high enough never to reject, so the limiter's cost is what is measured.
        "STRIDE_RATE_LIMIT_PRINCIPAL_BURST": "1e9",
        "STRIDE_RATE_LIMIT_IP_BURST": "1e9",
        **settings,
    }
    with _process(["-m", module], env, "stderr") as address:
        yield address


@contextmanager
def baseline_server(athlete: Path, page: Path) -> Iterator[str]:
    with _process(["-m", "bench.baseline_server", str(athlete), str(page)], {}, "stdout") as a:
        yield a

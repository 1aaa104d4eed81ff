"""Servers under test as separate processes, so the load generator does not share their GIL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "stride_admin_bench-token"
ADMIN_METADATA: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIDE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen")])
    env.update(extra)
    return env


@dataclass(frozen=True)
class Started:
    """A server process that is up: where it listens, and its metrics port when it logs one."""

    address: str
    metrics_port: int | None
    pid: int


def _drain(stream: IO[str]) -> None:
    while stream.read(65536):
        pass


@contextmanager
def _process(
    args: list[str], env: dict[str, str], read_port: str, *, want_metrics: bool = False
) -> Iterator[Started]:
    """Start `python ARGS`; its port comes from the first stdout line (read_port="stdout")
    or from the JSON log line "server started" on stderr (with `want_metrics`, the first
    such line carrying a `metrics_port`: under a supervisor, its children log the line too,
    without one). Terminated (killed if it does not exit within 30 s) however the block
    ends, KeyboardInterrupt included."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, so children it forks (a supervisor's) can be cleaned up.
        start_new_session=True,
    )
    try:
        stream = process.stdout if read_port == "stdout" else process.stderr
        assert stream is not None
        port = None
        metrics_port = None
        tail: deque[str] = deque(maxlen=20)
        for line in stream:
            tail.append(line.rstrip())
            if read_port == "stdout":
                port = line.strip()
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event") == "server started":
                if want_metrics and event.get("metrics_port") is None:
                    continue
                port = str(event["port"])
                if event.get("metrics_port") is not None:
                    metrics_port = int(event["metrics_port"])
                break
        if port is None:
            if read_port == "stdout" and process.stderr is not None:
                tail.extend(process.stderr.read().splitlines()[-20:])
            output = "\n".join(f"    {line}" for line in tail)
            raise RuntimeError(f"server did not start (exit {process.wait()}):\n{output}")
        # Keep draining the pipes so a chatty server never blocks on a full buffer.
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                threading.Thread(target=_drain, args=(pipe,), daemon=True).start()
        yield Started(f"127.0.0.1:{port}", metrics_port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Whatever it left behind in its group (children of a supervisor that died first).
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def stride_server(settings: dict[str, str], module: str = "server") -> Iterator[str]:
    """`module` is `server`, or `bench.plain_server` for the same server without interceptors."""
    with stride_server_started(settings, module) as started:
        yield started.address


@contextmanager
def stride_server_started(settings: dict[str, str], module: str = "server") -> Iterator[Started]:
    """Like `stride_server`, with the metrics port when settings give STRIDE_METRICS_ADDRESS
    (e.g. 127.0.0.1:0; the "server started" log line carries `metrics_port`)."""
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
    want_metrics = env["STRIDE_METRICS_ADDRESS"] not in ("", "off")
    with _process(["-m", module], env, "stderr", want_metrics=want_metrics) as started:
        yield started


@contextmanager
def baseline_server(athlete: Path, page: Path) -> Iterator[str]:
    with _process(["-m", "bench.baseline_server", str(athlete), str(page)], {}, "stdout") as s:
        yield s.address


@contextmanager
def baseline_server_for(answers: dict[str, Path]) -> Iterator[str]:
    """The bare server answering each call path (/pkg.Service/Method) with its file's bytes
    (and /bench.Baseline/Count with how many it has answered)."""
    args = ["-m", "bench.baseline_server"]
    for path, file in answers.items():
        args += ["--answer", f"{path}={file}"]
    with _process(args, {}, "stdout") as started:
        yield started.address

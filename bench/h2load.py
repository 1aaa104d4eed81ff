"""h2load as a gRPC load generator: framing, invocation, percentiles, Prometheus counters.

h2load (Debian package nghttp2-client) speaks HTTP/2 only: it sends a prebuilt body (a gRPC
frame: one flag byte 0, a 4-byte big-endian length, the serialized request) and counts HTTP
statuses. A gRPC error is an HTTP 200 with `grpc-status` in the trailers, so h2load's
"succeeded" says nothing about gRPC status: callers check it on the server's side
(`stride_rpc_handled_total`, or the bare server's own count).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

INSTALL_HINT = "h2load not found: apt-get install nghttp2-client"
HANDLED = "stride_rpc_handled_total"


def find_h2load() -> str | None:
    return shutil.which("h2load")


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return struct.pack(">BI", 0, len(message)) + message


def grpc_headers(token: str | None) -> list[str]:
    headers = ["content-type: application/grpc", "te: trailers"]
    if token is not None:
        headers.append(f"authorization: Bearer {token}")
    return headers


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (NaN when there are none)."""
    if not ordered:
        return float("nan")
    rank = max(1, int(-(-q * len(ordered) // 1)))  # ceil(q * n), at least 1
    return ordered[min(len(ordered), rank) - 1]


@dataclass(frozen=True)
class Run:
    """One h2load run: its counts and the per-request latencies of its log file."""

    requested: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    rate: float  # h2load's req/s: completed requests over the run's wall time
    latencies_ms: list[float] = field(repr=False)  # sorted
    output: str = field(repr=False)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 0.50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 0.99)

    @property
    def http_ok(self) -> bool:
        """Every request completed with HTTP 2xx (says nothing about gRPC status)."""
        return self.succeeded == self.requested == self.status_2xx and not (
            self.failed or self.errored or self.timeout
        )


_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed,"
    r" (\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx")
_FINISHED = re.compile(r"finished in [^,]+, ([\d.]+) req/s")


def parse_log(text: str) -> list[float]:
    """Latencies in ms, sorted, from h2load's --log-file (start µs, HTTP status, duration µs
    per line, tab-separated); requests that got no response (status -1) are left out."""
    latencies = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].strip() != "-1":
            latencies.append(int(parts[2]) / 1000)
    latencies.sort()
    return latencies


def parse_output(output: str, requested: int, latencies_ms: list[float]) -> Run:
    requests = _REQUESTS.search(output)
    status = _STATUS.search(output)
    finished = _FINISHED.search(output)
    if requests is None or status is None or finished is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    total, _started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    return Run(
        requested=total,
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=int(status.group(1)),
        rate=float(finished.group(1)),
        latencies_ms=latencies_ms,
        output=output,
    )


def run_h2load(
    h2load: str,
    url: str,
    body: bytes,
    *,
    requests: int,
    clients: int,
    streams: int,
    headers: Sequence[str],
    timeout: float = 600.0,
) -> Run:
    """`requests` calls of `url` (http://host:port/package.Service/Method) with `body` from
    `clients` connections of `streams` concurrent streams each, on one h2load thread."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        log_file = Path(tmp) / "requests.log"
        args = [
            h2load,
            "-n",
            str(requests),
            "-c",
            str(clients),
            "-m",
            str(streams),
            "-t",
            "1",
            "-d",
            str(body_file),
            "--log-file",
            str(log_file),
        ]
        for header in headers:
            args += ["-H", header]
        args.append(url)
        # subprocess.run kills h2load if this process is interrupted.
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"h2load exited {done.returncode}:\n{done.stdout}{done.stderr}")
        latencies = parse_log(log_file.read_text()) if log_file.exists() else []
    return parse_output(done.stdout, requests, latencies)


# Prometheus ---------------------------------------------------------------------------------

Counts = dict[tuple[str, str], float]


def scrape_handled(metrics_port: int, host: str = "127.0.0.1") -> Counts:
    """`stride_rpc_handled_total` by (method, code) from a /metrics endpoint."""
    with urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts: Counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == HANDLED:
                key = (sample.labels.get("method", ""), sample.labels.get("code", ""))
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def method_matches(label: str, path: str) -> bool:
    """Whether a metric's method label names the call path (/pkg.Service/Method): the label
    may be the full path or end with Service/Method."""
    label = label.strip("/")
    path = path.strip("/")
    return label == path or path.endswith("." + label) or path.endswith("/" + label)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str


def check_handled(before: Counts, after: Counts, path: str, run: Run) -> Verdict:
    """OK for `path` grew by exactly the requests h2load completed, and no non-OK code grew
    (for any method: nothing else should be running)."""
    grown = {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if after[key] - before.get(key, 0.0) > 0
    }
    ok_delta = sum(v for (m, c), v in grown.items() if c == "OK" and method_matches(m, path))
    errors = {f"{m} {c}": int(v) for (m, c), v in grown.items() if c != "OK"}
    problems = []
    if not run.http_ok:
        problems.append(
            f"h2load: {run.succeeded}/{run.requested} succeeded, {run.status_2xx} 2xx,"
            f" {run.failed} failed, {run.errored} errored, {run.timeout} timeout"
        )
    if int(ok_delta) != run.succeeded:
        problems.append(f"OK grew by {int(ok_delta)}, h2load completed {run.succeeded}")
    if errors:
        problems.append(f"non-OK codes grew: {errors}")
    return Verdict(not problems, "; ".join(problems) or f"{int(ok_delta)} OK")

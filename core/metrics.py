"""Prometheus metrics shared by the server and the workers.

A single server or worker process exposes its own registry on its own port; Prometheus
scrapes every process and sums across them (see docs/decisions.md). Server processes run
under one supervisor (STRIDE_PROCESSES > 1) instead write their values to files in a
directory the supervisor shares (prometheus_client's multiprocess mode, docs/processes.md),
and the supervisor serves all of them in one scrape. Each gauge says how its per-process
values combine there (`multiprocess_mode`; ignored with a single process): "live" modes
forget a process once the supervisor has seen it exit.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_STARTED = Counter("stride_rpc_started_total", "RPCs started", ["method"])
RPC_HANDLED = Counter("stride_rpc_handled_total", "RPCs completed", ["method", "code"])
RPC_LATENCY = Histogram(
    "stride_rpc_duration_seconds",
    "RPC latency until the status is sent",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Calls and pool connections held right now: the machine's total is the sum over processes.
RPC_IN_FLIGHT = Gauge("stride_rpc_in_flight", "RPCs being handled", multiprocess_mode="livesum")
STREAM_MESSAGES_SENT = Counter(
    "stride_rpc_stream_messages_sent_total", "Messages sent on server streams", ["method"]
)
STREAM_MESSAGES_RECEIVED = Counter(
    "stride_rpc_stream_messages_received_total", "Messages received on client streams", ["method"]
)
RATE_LIMITED = Counter(
    "stride_rate_limit_rejections_total", "Calls rejected by a rate limit", ["method"]
)
AUTH_FAILURES = Counter("stride_auth_failures_total", "Rejected credentials", ["reason"])
DB_POOL_CHECKED_OUT = Gauge(
    "stride_db_pool_checked_out", "Connections in use", ["engine"], multiprocess_mode="livesum"
)
DB_POOL_OVERFLOW = Gauge(
    "stride_db_pool_overflow",
    "Connections beyond pool_size",
    ["engine"],
    multiprocess_mode="livesum",
)
CACHE_REQUESTS = Counter("stride_cache_requests_total", "Cache lookups", ["result"])
JOB_RUNS = Counter("stride_job_runs_total", "Job task runs", ["kind"])
JOB_FAILURES = Counter("stride_job_failures_total", "Job task failures", ["kind"])
JOB_DURATION = Histogram("stride_job_duration_seconds", "Job task run time", ["kind"])
# Every process measures the same queue and the same dependencies: the latest measurement
# of any live process is the answer (a sum would count the queue once per process).
QUEUE_DEPTH = Gauge(
    "stride_task_queue_depth",
    "Tasks waiting in the Huey queue",
    multiprocess_mode="livemostrecent",
)
DEPENDENCY_UP = Gauge(
    "stride_dependency_up",
    "1 when a dependency answered its last check",
    ["dependency"],
    multiprocess_mode="livemostrecent",
)

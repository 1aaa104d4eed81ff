"""`make bench`: every benchmark, each against its baseline in the same run.

`python -m bench --only fairness` (or `BENCH_ONLY=fairness`) runs just the named ones
(comma-separated: reads, interceptors, fairness, job-events, sync, analytics, imports).
The fairness, job-events, sync, analytics and imports benchmarks have their own options:
`python -m bench.fairness --help`, `python -m bench.job_events --help`, and so on.
"""

import argparse
import os
from collections.abc import Callable

from bench import analytics, fairness, imports, interceptors, job_events, reads, sync

BENCHMARKS: dict[str, Callable[[], object]] = {
    "reads": reads.run,
    "interceptors": interceptors.run,
    "fairness": fairness.run,
    "job-events": job_events.run,
    "sync": sync.run,
    "analytics": analytics.run,
    "imports": imports.run,
}

parser = argparse.ArgumentParser(prog="python -m bench")
parser.add_argument(
    "--only",
    default=os.environ.get("BENCH_ONLY", ""),
    help=f"comma-separated benchmarks to run, of: {', '.join(BENCHMARKS)} (default: all)",
)
chosen = [name.strip() for name in parser.parse_args().only.split(",") if name.strip()]
unknown = [name for name in chosen if name not in BENCHMARKS]
if unknown:
    parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
for index, name in enumerate(chosen or BENCHMARKS):
    if index:
        print()
    BENCHMARKS[name]()

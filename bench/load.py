"""A closed-loop gRPC load generator: client processes, each with concurrent aio callers."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class Result:
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def line(self, label: str) -> str:
        return (
            f"{label:<44} {self.rate:9.0f} calls/s   p50 {self.percentile(0.5):6.2f} ms"
            f"   p99 {self.percentile(0.99):6.2f} ms"
        )


# (address, method path, serialized request, response deserializer, duration, concurrency)
Metadata = tuple[tuple[str, str | bytes], ...]
Job = tuple[str, str, bytes, Callable[[bytes], Any], float, int, Metadata]


async def _drive(job: Job) -> tuple[int, list[float]]:
    address, method, payload, deserialize, duration, concurrency, metadata = job
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=deserialize
        )
        await call(payload, metadata=metadata)  # warm the connection
        deadline = time.perf_counter() + duration

        async def caller() -> None:
            while (start := time.perf_counter()) < deadline:
                await call(payload, metadata=metadata)
                latencies.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return len(latencies), latencies


def _run(job: Job) -> tuple[int, list[float]]:
    return asyncio.run(_drive(job))


def measure(
    address: str,
    method: str,
    request: Any,
    response_type: Any,
    *,
    seconds: float = 4.0,
    processes: int = 2,
    concurrency: int = 16,
    metadata: Metadata = (),
) -> Result:
    job: Job = (
        address, method, request.SerializeToString(), response_type.FromString,
        seconds, concurrency, metadata,
    )  # fmt: skip
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        started = time.perf_counter()
        outcomes = pool.map(_run, [job] * processes)
        elapsed = time.perf_counter() - started
    calls = sum(count for count, _ in outcomes)
    latencies = [value for _, values in outcomes for value in values]
    # Use the callers' own window, not pool start-up, for the rate.
    window = min(elapsed, seconds) if calls else elapsed
    return Result(calls, window, latencies)

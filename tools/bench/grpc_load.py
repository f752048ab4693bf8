"""Closed-loop gRPC load: N calls in flight for a fixed time, throughput and latency percentiles.

Shared by the benchmarks so every service is measured by the same client. The client
runs in its own process (`run_load_process`) so it never shares an interpreter, and a
GIL, with the server under test.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import grpc


@dataclass(frozen=True)
class LoadResult:
    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds


async def drive(make_call: Callable[[int], Awaitable[object]], *, in_flight: int, seconds: float,
                warmup: float = 1.0) -> LoadResult:
    """Keep `in_flight` callers busy; count only calls that finish inside the measured window."""
    latencies: list[float] = []
    errors = 0
    start_measuring = time.perf_counter() + warmup
    stop = start_measuring + seconds
    sequence = 0

    async def caller() -> None:
        nonlocal errors, sequence
        while (now := time.perf_counter()) < stop:
            sequence += 1
            try:
                await make_call(sequence)
            except grpc.aio.AioRpcError:
                if now >= start_measuring:
                    errors += 1
                continue
            done = time.perf_counter()
            if now >= start_measuring and done <= stop:
                latencies.append(done - now)

    await asyncio.gather(*(caller() for _ in range(in_flight)))
    latencies.sort()
    return LoadResult(
        calls=len(latencies),
        errors=errors,
        seconds=seconds,
        p50_ms=1000 * statistics.median(latencies) if latencies else float("nan"),
        p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    )


def run_load_process(module: str, *args: str) -> LoadResult:
    """Run `python -m <module> load <args>` and parse the JSON result it prints last."""
    completed = subprocess.run(
        [sys.executable, "-m", module, "load", *args], check=True, capture_output=True, text=True
    )
    return LoadResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


def print_result(result: LoadResult) -> None:
    print(json.dumps(asdict(result)), flush=True)


def ratio_table(rows: list[tuple[str, LoadResult]], baseline: LoadResult) -> str:
    lines = [f"{'server':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ratio':>7}"]
    for label, result in rows:
        lines.append(
            f"{label:<34} {result.per_second:>9.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f}"
            f" {result.errors:>7} {result.per_second / baseline.per_second:>6.2f}x"
        )
    return "\n".join(lines)

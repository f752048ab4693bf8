"""Closed-loop gRPC load: N calls in flight for a fixed time, throughput and latency percentiles.

Shared by the benchmarks so every service is measured by the same client. The client
runs in its own process (`run_load_process`) so it never shares an interpreter, and a
GIL, with the server under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from libs.kit.server import ServiceDefinition, ServiceRuntime, start_service
from libs.kit.transport import TLS_ENV, TlsMode

ECHO_SERVICE = "bench.v1.EchoService"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"


def on_plaintext_loopback() -> None:
    """The benchmarks' transport, stated: plaintext on loopback (`LIMELIGHT_TLS=off`).

    Every server a benchmark starts, in its process or as a child process, inherits it, so
    the figures stay comparable with those measured before TLS (`limelight up` defaults to TLS).
    """
    os.environ[TLS_ENV] = TlsMode.OFF.value


@dataclass(frozen=True)
class LoadResult:
    calls: int  # completed inside the measured window
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    all_calls: int = 0  # completed at all, warm-up included: what the server's CPU time paid for
    server_cpu_us_per_call: float = float("nan")

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds


async def drive(make_call: Callable[[int], Awaitable[object]], *, in_flight: int, seconds: float,
                warmup: float = 1.0) -> LoadResult:
    """Keep `in_flight` callers busy; count only calls that finish inside the measured window."""
    latencies: list[float] = []
    errors = 0
    completed = 0
    start_measuring = time.perf_counter() + warmup
    stop = start_measuring + seconds
    sequence = 0

    async def caller() -> None:
        nonlocal errors, sequence, completed
        while (now := time.perf_counter()) < stop:
            sequence += 1
            try:
                await make_call(sequence)
            except grpc.aio.AioRpcError:
                if now >= start_measuring:
                    errors += 1
                continue
            done = time.perf_counter()
            completed += 1
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
        all_calls=completed,
    )


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load_process(module: str, *args: str, server_pid: int) -> LoadResult:
    """Run `python -m <module> load <args>` against the server `server_pid`.

    Besides throughput and latency, reports the server's CPU time per call: on a shared
    machine other processes steal throughput, but not the CPU time a call costs, so the
    CPU ratio is the steadier estimate of the kit's overhead.
    """
    cpu_before = process_cpu_seconds(server_pid)
    completed = subprocess.run(
        [sys.executable, "-m", module, "load", *args], check=True, capture_output=True, text=True
    )
    cpu_seconds = process_cpu_seconds(server_pid) - cpu_before
    result = LoadResult(**json.loads(completed.stdout.strip().splitlines()[-1]))
    return replace(result, server_cpu_us_per_call=1e6 * cpu_seconds / max(1, result.all_calls))


def print_result(result: LoadResult) -> None:
    print(json.dumps(asdict(result)), flush=True)


def ratio_table(rows: list[tuple[str, LoadResult]], baseline: LoadResult) -> str:
    """One line per server; `ratio` is throughput over the baseline's, `cpu ratio` the
    baseline's server CPU per call over this one's (both: higher is better)."""
    lines = [
        f"{'server':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'cpu us/call':>11} {'ratio':>6} {'cpu ratio':>9}"
    ]
    for label, result in rows:
        lines.append(
            f"{label:<34} {result.per_second:>8.0f} {result.p50_ms:>7.2f} {result.p99_ms:>7.2f} {result.errors:>6}"
            f" {result.server_cpu_us_per_call:>11.0f} {result.per_second / baseline.per_second:>5.2f}x"
            f" {baseline.server_cpu_us_per_call / result.server_cpu_us_per_call:>8.2f}x"
        )
    return "\n".join(lines)


# Servers as child processes ----------------------------------------------------------------------


def kit_echo(request_type: Any, reply: bytes) -> Callable[[ServiceRuntime], ServiceDefinition]:
    """A kit-built server whose `ECHO_METHOD` parses `request_type` and answers `reply`: the most
    any kit-built service can do per call here (the baseline the benchmarks compare against)."""
    async def echo(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return reply

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        method: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=request_type.FromString)
        handlers = grpc.method_handlers_generic_handler(ECHO_SERVICE, {"Echo": method})
        return ServiceDefinition(service_names=[ECHO_SERVICE],
                                 register=lambda server: server.add_generic_rpc_handlers((handlers,)))

    return build


async def serve_until_sigterm(name: str, build: Callable[[ServiceRuntime], ServiceDefinition], port: int) -> None:
    """Serve, print `ready` (what `spawn_server` waits for), and stop on SIGTERM."""
    running = await start_service(name, build, port=port)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print("ready", flush=True)
    await stopping.wait()
    await running.stop(0)


def spawn_server(module: str, which: str, port: int, root: Path) -> subprocess.Popen[str]:
    """`python -m <module> serve <which> <port>` with tracing on every call, once it serves."""
    env = {**os.environ, "LIMELIGHT_DATA_DIR": str(root), "LIMELIGHT_TRACE_SAMPLE_RATIO": "1.0"}
    process = subprocess.Popen([sys.executable, "-m", module, "serve", which, str(port)], env=env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("ready"):
            return process
    raise RuntimeError(f"the {which} server exited before serving")


def interleaved_rounds(module: str, servers: Mapping[str, subprocess.Popen[str]], targets: Mapping[str, str],
                       methods: Mapping[str, str], *load_arguments: str, rounds: int) -> dict[str, LoadResult]:
    """`rounds` rounds of one load process per server in turn; the best round (throughput) of each."""
    results: dict[str, list[LoadResult]] = defaultdict(list)
    for round_number in range(rounds):
        for label, server in servers.items():
            result = run_load_process(module, targets[label], methods[label], *load_arguments, server_pid=server.pid)
            results[label].append(result)
            print(f"round {round_number + 1}: {label}: {result.per_second:.0f} calls/s, "
                  f"{result.errors} errors", file=sys.stderr)
    return {label: max(runs, key=lambda r: r.per_second) for label, runs in results.items()}


def stop_servers(servers: Mapping[str, subprocess.Popen[str]]) -> None:
    for server in servers.values():
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

"""Durable audit appends per second through the RPC, 64 concurrent writers, against a baseline.

Starts `limelight serve compliance` as its own process (temporary data directory), then
from this process runs 64 concurrent callers for `--seconds` each:

- baseline: the kit's health Check on the same server (the same kit interceptor and
  channel, no work): the ceiling this machine puts on any RPC;
- AppendEvents with one event per call, and with `--batch` events per call (what the
  audit client sends when services are busy). Every reply means the events were
  committed with synchronous=FULL before it was sent.

    python -m tools.bench.audit_append_rpc [--seconds 5] [--writers 64] [--batch 16]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc

from libs.audit.protos import timestamp
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.ports import reserve_port
from tools.bench.grpc_load import on_plaintext_loopback
from tools.supervisor import start_service_process


async def run_callers(call: Callable[[], Awaitable[int]], writers: int, seconds: float) -> int:
    """Units done (requests or events) by `writers` concurrent loops of `call` in `seconds`."""
    deadline = time.monotonic() + seconds
    done = [0] * writers

    async def caller(number: int) -> None:
        while time.monotonic() < deadline:
            done[number] += await call()

    await asyncio.gather(*(caller(n) for n in range(writers)))
    return sum(done)


def events(count: int) -> list[audit_pb2.AuditEvent]:
    now = timestamp(dt.datetime.now(dt.UTC))
    return [audit_pb2.AuditEvent(event_id=str(uuid.uuid4()), actor="services/gifts", action="gifts.SendGift",
                                 resource="creators/bo/lives/l1", outcome=audit_pb2.OUTCOME_SUCCEEDED,
                                 trace_id="4bf92f3577b34da6a3ce929d0e0e4736", event_time=now,
                                 subject_ref="ab" * 32, attributes={"coins": "30"}) for _ in range(count)]


async def measure(target: str, root: Path, writers: int, seconds: float, batch: int) -> dict[str, float]:
    token = mint_token(platform_signing_key(root), TokenClaims("services/gifts", frozenset({Role.SERVICE})),
                       ttl=dt.timedelta(hours=1))
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        audit = audit_pb2_grpc.AuditServiceStub(channel)

        async def check() -> int:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            return 1

        def appender(size: int) -> Callable[[], Awaitable[int]]:
            async def append() -> int:
                await audit.AppendEvents(audit_pb2.AppendEventsRequest(events=events(size)), metadata=metadata,
                                         timeout=10)
                return size
            return append

        await run_callers(check, writers, 0.5)  # warm up the channel and the server
        return {
            "health Check (baseline)": await run_callers(check, writers, seconds) / seconds,
            "AppendEvents, 1 event per call": await run_callers(appender(1), writers, seconds) / seconds,
            f"AppendEvents, {batch} events per call": await run_callers(appender(batch), writers, seconds) / seconds,
        }


def main() -> None:
    on_plaintext_loopback()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        port = reserve_port()
        server = start_service_process("compliance", root, port)
        try:
            rates = asyncio.run(measure(f"127.0.0.1:{port}", root, arguments.writers, arguments.seconds,
                                        arguments.batch))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    baseline = rates["health Check (baseline)"]
    print(f"{arguments.writers} concurrent callers, server in its own process, synchronous=FULL, "
          f"{arguments.seconds:.0f} s each")
    for name, rate in rates.items():
        unit = "calls/s" if name.startswith("health") else "durable events/s"
        print(f"  {name:<32} {rate:8.0f} {unit:<17} ({rate / baseline:.2f}x the baseline call rate)")


if __name__ == "__main__":
    main()

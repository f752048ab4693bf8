"""SendGift through the running gifts service, as a ratio to a traced bare grpc.aio echo server.

    python -m tools.bench.send_gift [--seconds 5] [--rounds 2] [--in-flight 64]

Three servers run as their own processes, all with tracing on (every call a SERVER span,
exported as JSON lines under the data directory), and one load process at a time keeps 64
calls in flight against one of them with the same SendGiftRequest and bearer token
(`tools.bench.grpc_load`, shared with the other benchmarks); rounds are interleaved:

- traced bare grpc.aio echo: a grpc.aio server whose only interceptor opens a span; it
  answers a fixed SendGiftResponse (the baseline the ratio is taken against);
- kit echo: the same echo behind the service kit (tracing, token check, protovalidate), the
  most any kit-built service can do per call on this machine;
- SendGift: the gifts service, durable (synchronous=FULL, group commit in its ledger
  process), every rule and audit record included (the records stay in the outbox: no
  compliance service runs here to ship them to);
- SendGift with the committer in the server's own process (`LIMELIGHT_GIFTS_LEDGER=in-process`),
  the design the ledger process replaced.

Prints the table (best round of each: throughput, latency, and each server's CPU per call,
its helper processes included, which other sessions' load on the cores does not move) and
SendGift as a ratio to both echoes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from limelight.gifts.v1 import (
    gifts_pb2,
    live_pb2,
    live_pb2_grpc,
    standing_pb2,
    standing_pb2_grpc,
    wallet_pb2,
    wallet_pb2_grpc,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from libs.auth.keys import load_or_create_private_key
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.telemetry import configure_telemetry
from libs.kit.transport import ROUND_ROBIN
from libs.ports import reserve_port
from services.gifts.model.payments import LocalPaymentProvider, Purchase
from tools.bench.grpc_load import (
    LoadResult,
    drive,
    on_plaintext_loopback,
    print_result,
    process_cpu_seconds,
    ratio_table,
    run_load_process,
)

MODULE = "tools.bench.send_gift"
ECHO_SERVICE = "bench.v1.EchoService"
SENDERS = 2_000  # enough that no viewer nears the 60-gifts-a-minute velocity rule
GIFT = "gifts/doughnut"  # 30 coins: a fee leg, a share leg and a diamond leg
BASELINE = "traced bare grpc.aio echo"
KIT_ECHO = "kit echo (tracing, auth, validation)"
GIFTS = "SendGift (durable, every rule)"
GIFTS_IN_PROCESS = "SendGift, committer in-process"


# Servers ---------------------------------------------------------------------------------------

_REPLY = gifts_pb2.SendGiftResponse(coin_balance=1).SerializeToString()


async def _echo(request: Any, context: grpc.aio.ServicerContext) -> bytes:
    return _REPLY


def _echo_handlers(deserialize: Any) -> grpc.GenericRpcHandler:
    method = grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=deserialize)
    return grpc.method_handlers_generic_handler(ECHO_SERVICE, {"Echo": method})


class SpanInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A SERVER span around each call, and nothing else."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        behavior, method = handler.unary_unary, details.method

        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._tracer.start_as_current_span(method, kind=SpanKind.SERVER,
                                                    attributes={"rpc.system": "grpc", "rpc.method": method}):
                return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(traced, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


async def serve_echo(port: int) -> None:
    telemetry = configure_telemetry("bench-echo")
    server = grpc.aio.server(interceptors=[SpanInterceptor(telemetry.tracer)])
    server.add_generic_rpc_handlers((_echo_handlers(None),))
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _until_sigterm()
    await server.stop(0)
    telemetry.shutdown()


async def serve_kit_echo(port: int) -> None:
    from libs.kit.server import ServiceDefinition, ServiceRuntime, start_service

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        return ServiceDefinition(service_names=[ECHO_SERVICE], register=lambda server: server.add_generic_rpc_handlers(
            (_echo_handlers(gifts_pb2.SendGiftRequest.FromString),)))

    running = await start_service("bench-kit-echo", build, port=port)
    await _until_sigterm()
    await running.stop(0)


async def _until_sigterm() -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    print("ready", flush=True)
    await stopping.wait()


def _spawn(arguments: list[str], root: Path, **settings: str) -> subprocess.Popen[str]:
    # No compliance service runs here, so the audit events stay (durably) in the gifts
    # outbox instead of being retried against an absent AppendEvents.
    # Plaintext on loopback for all three, as the bare echo is: the ratio compares serving, not TLS.
    env = {**os.environ, "LIMELIGHT_DATA_DIR": str(root), "LIMELIGHT_TRACE_SAMPLE_RATIO": "1.0",
           "LIMELIGHT_GIFTS_AUDIT_SHIPPING": "off", "LIMELIGHT_TLS": "off", **settings}
    process = subprocess.Popen([sys.executable, *arguments], env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:  # the gifts service says "gifts listening on ..." when it is up
        if line.startswith(("ready", "gifts listening")):
            return process
    raise RuntimeError(f"{arguments} exited before serving")


# Load -------------------------------------------------------------------------------------------


def _auth(root: Path, user: str, *roles: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(f"users/{user}", frozenset({Role.VIEWER, *roles}), birth_date=dt.date(1990, 1, 1))
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=2))}"),)


async def prepare_gifts(target: str, root: Path) -> str:
    """A creator LIVE, and SENDERS viewers with 20,000 coins each; returns the LIVE's name."""
    async with grpc.aio.insecure_channel(target) as channel:
        request = standing_pb2.UpdateAccountStandingRequest(
            standing=standing_pb2.AccountStanding(name="users/host/standing", follower_count=10_000))
        request.update_mask.paths.append("follower_count")
        await standing_pb2_grpc.AccountStandingServiceStub(channel).UpdateAccountStanding(
            request, metadata=_auth(root, "ops", Role.ADMIN))
        live = await live_pb2_grpc.LiveServiceStub(channel).StartLive(live_pb2.StartLiveRequest(
            parent="creators/host", request_id=str(uuid.uuid4()), title="bench"), metadata=_auth(root, "host"))
        shop = LocalPaymentProvider.with_signing_key(
            load_or_create_private_key(root / "keys" / "local-payments-ed25519.pem"))
        wallet = wallet_pb2_grpc.WalletServiceStub(channel)
        now = dt.datetime.now(dt.UTC)
        gate = asyncio.Semaphore(64)

        async def top_up(index: int) -> None:
            receipt = shop.issue_receipt(Purchase(str(uuid.uuid4()), f"v{index}", "coins-20000", 20_000, 20_999,
                                                  now))
            async with gate:
                await wallet.TopUpCoins(wallet_pb2.TopUpCoinsRequest(
                    request_id=str(uuid.uuid4()), wallet=f"users/v{index}/wallet", coin_pack="coinPacks/coins-20000",
                    receipt=wallet_pb2.PaymentReceipt(provider="local", receipt=receipt)),
                    metadata=_auth(root, f"v{index}"))

        await asyncio.gather(*(top_up(index) for index in range(SENDERS)))
        return str(live.live_session.name)


async def load(target: str, method: str, live: str, in_flight: int, seconds: float) -> LoadResult:
    root = Path(os.environ["LIMELIGHT_DATA_DIR"])
    viewers = [_auth(root, f"v{index}") for index in range(SENDERS)]
    async with grpc.aio.insecure_channel(target, options=[ROUND_ROBIN]) as channel:
        call = channel.unary_unary(method, request_serializer=gifts_pb2.SendGiftRequest.SerializeToString,
                                   response_deserializer=gifts_pb2.SendGiftResponse.FromString)

        async def send(sequence: int) -> object:
            request = gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live=live, gift=GIFT, count=1)
            return await call(request, metadata=viewers[sequence % SENDERS], timeout=30)

        return await drive(send, in_flight=in_flight, seconds=seconds)


def _descendants(pid: int) -> list[int]:
    """The processes a server started (the gifts ledger process), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def measure(server: subprocess.Popen[str], *arguments: str) -> LoadResult:
    """One load run; the server's CPU per call counts the processes it started too."""
    helpers = _descendants(server.pid)
    before = sum(map(process_cpu_seconds, helpers))
    result = run_load_process(MODULE, *arguments, server_pid=server.pid)
    helper_us = 1e6 * (sum(map(process_cpu_seconds, helpers)) - before) / max(1, result.all_calls)
    return dataclasses.replace(result, server_cpu_us_per_call=result.server_cpu_us_per_call + helper_us)


def main() -> None:
    on_plaintext_loopback()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64)
    arguments = parser.parse_args()
    ports = {label: reserve_port() for label in (BASELINE, KIT_ECHO, GIFTS, GIFTS_IN_PROCESS)}
    echo_method, send_gift = f"/{ECHO_SERVICE}/Echo", "/limelight.gifts.v1.GiftService/SendGift"
    methods = {BASELINE: echo_method, KIT_ECHO: echo_method, GIFTS: send_gift, GIFTS_IN_PROCESS: send_gift}
    results: dict[str, list[LoadResult]] = defaultdict(list)
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-send-gift-") as scratch:
        root, in_process_root = Path(scratch) / "ledger-process", Path(scratch) / "in-process"
        os.environ["LIMELIGHT_DATA_DIR"] = str(root)  # the tokens and receipts the load uses
        servers = [
            _spawn(["-m", MODULE, "serve", "echo", str(ports[BASELINE])], root),
            _spawn(["-m", MODULE, "serve", "kit-echo", str(ports[KIT_ECHO])], root),
            # No compliance here: the LIVE titles the setup writes are sealed under in-memory keys.
            _spawn(["-m", "tools.cli", "serve", "gifts"], root, LIMELIGHT_GIFTS_PORT=str(ports[GIFTS]),
                   LIMELIGHT_DATA_KEYS="ephemeral"),
            _spawn(["-m", "tools.cli", "serve", "gifts"], in_process_root, LIMELIGHT_GIFTS_LEDGER="in-process",
                   LIMELIGHT_GIFTS_PORT=str(ports[GIFTS_IN_PROCESS]), LIMELIGHT_DATA_KEYS="ephemeral"),
        ]
        try:
            lives = {label: asyncio.run(prepare_gifts(f"127.0.0.1:{ports[label]}", directory))
                     for label, directory in ((GIFTS, root), (GIFTS_IN_PROCESS, in_process_root))}
            for round_number in range(arguments.rounds):
                for (label, port), server in zip(ports.items(), servers, strict=True):
                    os.environ["LIMELIGHT_DATA_DIR"] = str(in_process_root if label == GIFTS_IN_PROCESS else root)
                    result = measure(server, f"127.0.0.1:{port}", methods[label],
                                     lives.get(label, lives[GIFTS]), str(arguments.in_flight), str(arguments.seconds))
                    results[label].append(result)
                    print(f"round {round_number + 1}: {label}: {result.per_second:.0f} calls/s", file=sys.stderr)
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
    best = {label: max(runs, key=lambda r: r.per_second) for label, runs in results.items()}
    print(f"SendGift vs echo, {arguments.in_flight} in flight, {arguments.seconds:.0f} s per run, best of "
          f"{arguments.rounds} interleaved rounds, tracing on, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(ratio_table(list(best.items()), best[BASELINE]))
    print(f"SendGift / kit echo: {best[GIFTS].per_second / best[KIT_ECHO].per_second:.2f}x; ledger process / "
          f"in-process committer: {best[GIFTS].per_second / best[GIFTS_IN_PROCESS].per_second:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run({"echo": serve_echo, "kit-echo": serve_kit_echo}[sys.argv[2]](int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        print_result(asyncio.run(load(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]),
                                      float(sys.argv[6]))))
    else:
        main()

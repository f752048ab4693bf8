"""CheckConsent through the running compliance service, and the cached check inside a caller.

    python -m tools.bench.check_consent [--seconds 5] [--rounds 2] [--in-flight 64] [--users 1000]

Plaintext on loopback (`grpc_load.on_plaintext_loopback`). Two servers run as their own
processes, both built by the service kit with tracing on (every call a SERVER span), token
check and protovalidate; a load process (`tools.bench.grpc_load`) calls one of them with a
service token, the users' CheckConsent requests in turn (`--users` users, each with one
grant recorded before the load):

- kit echo: a CheckConsentRequest handler answering a fixed response (the baseline);
- CheckConsent: the whole compliance server (audit log, consent area and the rest).

It measures (a) one call at a time against CheckConsent: p50/p99 (target p99 < 2 ms), and the
kit echo the same way (the floor the machine puts under any RPC);
(b) `--in-flight` calls in flight against both, interleaved rounds, best of each: throughput
as a ratio to the kit echo (target >= 0.8x; latency there is queueing, reported only);
(c) `libs.consent.ConsentCache` in this process against the running server: the cached
check (`cached`, the hot path) and the awaited hit (`permitted`), microseconds per call
(target < 5 us).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.consent.cache import ConsentCache
from libs.ports import reserve_port
from services.compliance.consent.servicer import CONSENT
from services.compliance.server import build as build_compliance
from tools.bench.grpc_load import (
    ECHO_METHOD,
    LoadResult,
    drive,
    interleaved_rounds,
    kit_echo,
    on_plaintext_loopback,
    print_result,
    ratio_table,
    run_load_process,
    serve_until_sigterm,
    spawn_server,
    stop_servers,
)

MODULE = "tools.bench.check_consent"
KIT_ECHO = "kit echo (tracing, auth, validation)"
CHECK = "CheckConsent (compliance)"
CHECK_METHOD = f"/{CONSENT}/CheckConsent"
FEED = consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT
ADS = consent_pb2.CONSENT_PURPOSE_PERSONALISED_ADS

_REPLY = consent_pb2.CheckConsentResponse(version=1, decisions=[consent_pb2.PurposeDecision(
    purpose=FEED, permitted=True, basis=consent_pb2.CONSENT_BASIS_CONSENT_GRANTED)]).SerializeToString()


def user(index: int) -> str:
    return f"users/bench-{index}"


def bearer(root: Path, subject: str, role: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(subject, frozenset({role}), birth_date=birth_date_for_age(30, dt.date.today()))
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=1))}"),)


# Servers ---------------------------------------------------------------------------------------


async def serve(which: str, port: int) -> None:
    builds = {"kit-echo": kit_echo(consent_pb2.CheckConsentRequest, _REPLY), "compliance": build_compliance}
    await serve_until_sigterm("bench-kit-echo" if which == "kit-echo" else "compliance", builds[which], port)


async def seed(target: str, root: Path, users: int) -> None:
    """One grant per user, recorded by the user, so CheckConsent answers from real records."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)

        async def grant(index: int) -> None:
            request = consent_pb2.RecordConsentRequest(
                parent=user(index), request_id=str(uuid.uuid4()), purpose=FEED,
                decision=consent_pb2.CONSENT_DECISION_GRANTED, notice_version="bench",
                method=consent_pb2.CONSENT_METHOD_IN_APP_DIALOG, source="bench")
            request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
            await stub.RecordConsent(request, metadata=bearer(root, user(index), Role.VIEWER), timeout=30)

        for start in range(0, users, 64):
            await asyncio.gather(*(grant(index) for index in range(start, min(users, start + 64))))


# Load -------------------------------------------------------------------------------------------


async def load(target: str, method: str, in_flight: int, seconds: float, users: int) -> LoadResult:
    metadata = bearer(Path(os.environ["LIMELIGHT_DATA_DIR"]), "services/ranking", Role.SERVICE)
    requests = [consent_pb2.CheckConsentRequest(parent=user(index), purposes=[FEED, ADS]) for index in range(users)]
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=consent_pb2.CheckConsentRequest.SerializeToString,
                                   response_deserializer=consent_pb2.CheckConsentResponse.FromString)

        async def check(sequence: int) -> object:
            return await call(requests[sequence % len(requests)], metadata=metadata, timeout=30)

        return await drive(check, in_flight=in_flight, seconds=seconds)


async def cached_check_us(target: str, root: Path, users: int, calls: int = 200_000) -> tuple[float, float]:
    """(µs per `cached`, µs per awaited `permitted` hit) in this process, the cache warm."""
    async with grpc.aio.insecure_channel(target) as channel:
        cache = ConsentCache(consent_pb2_grpc.ConsentServiceStub(channel),
                             metadata=bearer(root, "services/ranking", Role.SERVICE))
        await cache.start()
        await cache.wait_live()
        for index in range(users):
            await cache.permitted(user(index), FEED)
        subjects = [user(index % users) for index in range(1024)]
        start = time.perf_counter()
        for sequence in range(calls):
            cache.cached(subjects[sequence & 1023], FEED)
        cached = (time.perf_counter() - start) / calls * 1e6
        start = time.perf_counter()
        for sequence in range(calls):
            await cache.permitted(subjects[sequence & 1023], FEED)
        awaited = (time.perf_counter() - start) / calls * 1e6
        await cache.stop()
    return cached, awaited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--users", type=int, default=1000)
    arguments = parser.parse_args()
    on_plaintext_loopback()
    ports = {KIT_ECHO: reserve_port(), CHECK: reserve_port()}
    targets = {label: f"127.0.0.1:{port}" for label, port in ports.items()}
    methods = {KIT_ECHO: ECHO_METHOD, CHECK: CHECK_METHOD}
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-check-consent-") as scratch:
        root = Path(scratch)
        os.environ["LIMELIGHT_DATA_DIR"] = str(root)  # the platform key the tokens are signed with
        servers = {KIT_ECHO: spawn_server(MODULE, "kit-echo", ports[KIT_ECHO], root),
                   CHECK: spawn_server(MODULE, "compliance", ports[CHECK], root)}
        try:
            asyncio.run(seed(targets[CHECK], root, arguments.users))
            # The kit echo one call at a time too: the floor this machine puts under any RPC's p99.
            serial_echo = run_load_process(MODULE, targets[KIT_ECHO], ECHO_METHOD, "1", str(arguments.seconds),
                                           str(arguments.users), server_pid=servers[KIT_ECHO].pid)
            serial = run_load_process(MODULE, targets[CHECK], CHECK_METHOD, "1", str(arguments.seconds),
                                      str(arguments.users), server_pid=servers[CHECK].pid)
            best = interleaved_rounds(MODULE, servers, targets, methods, str(arguments.in_flight),
                                      str(arguments.seconds), str(arguments.users), rounds=arguments.rounds)
            cached, awaited = asyncio.run(cached_check_us(targets[CHECK], root, arguments.users))
        finally:
            stop_servers(servers)
    print(f"CheckConsent, plaintext loopback, tracing on, {arguments.users} users, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"(a) one call at a time: p50 {serial.p50_ms:.2f} ms, p99 {serial.p99_ms:.2f} ms, "
          f"{serial.per_second:.0f} calls/s, {serial.errors} errors (target p99 < 2 ms); the kit echo the same "
          f"way: p50 {serial_echo.p50_ms:.2f} ms, p99 {serial_echo.p99_ms:.2f} ms")
    print(f"(b) {arguments.in_flight} in flight, {arguments.seconds:.0f} s per run, best of {arguments.rounds} rounds:")
    print(ratio_table(list(best.items()), best[KIT_ECHO]))
    check, echo = best[CHECK], best[KIT_ECHO]
    print(f"    CheckConsent / kit echo: {check.per_second / echo.per_second:.2f}x throughput (target >= 0.8x)")
    print(f"(c) cached check in a caller: {cached:.2f} us per cached(), {awaited:.2f} us per awaited permitted() hit"
          " (target < 5 us)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        print_result(asyncio.run(load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                                      int(sys.argv[6]))))
    else:
        main()

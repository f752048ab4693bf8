"""RecordClick through the running affiliate service, against the traced kit echo in the same run.

    python -m tools.bench.record_click [--seconds 5] [--rounds 2] [--in-flight 64] [--users 1000] [--links 20]

Plaintext on loopback (`grpc_load.on_plaintext_loopback`). Three servers run as their own
processes, each built by the service kit with tracing on (every call a SERVER span), token
check and protovalidate:

- kit echo: a RecordClickRequest handler answering a fixed response (the baseline);
- compliance: consent (the affiliate-tracking grants), data keys and the audit log;
- affiliate: the whole service; every click is verified (HMAC), filtered (GIVT, programme,
  self-click, the consent cache, the hourly dedupe in memory), its country sealed for counted
  clicks, and recorded durably through the group committer with its CPC commission and audit event.

The load (`--links` links of one programme paying CPC, `--users` users who granted tracking and
clicked once before, a browser user agent and an address per call) walks user x link pairs, so
most clicks count and a user's repeat on a link inside the hour is the duplicate it would be. It measures (a) one call
at a time: p50/p99; (b) `--in-flight` calls in flight against both servers, interleaved rounds,
best of each: throughput as a ratio to the kit echo (target >= 0.8x), p50/p99 and server CPU per call.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf.duration_pb2 import Duration
from limelight.affiliate.v1 import links_pb2, links_pb2_grpc, programs_pb2, programs_pb2_grpc
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.ports import reserve_port
from libs.timestamps import to_timestamp
from services.affiliate.server import LINKS
from services.affiliate.server import build as build_affiliate
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

MODULE = "tools.bench.record_click"
KIT_ECHO = "kit echo (tracing, auth, validation)"
CLICK = "RecordClick (affiliate)"
CLICK_METHOD = f"/{LINKS}/RecordClick"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15"
_REPLY = links_pb2.RecordClickResponse(click=links_pb2.Click(
    name="creators/c/trackingLinks/l/clicks/x", counted=True, visitor_id="v" * 24,
    redirect_url="https://shop.limelight.dev/merchants/m")).SerializeToString()


def user(index: int) -> str:
    return f"users/bench-{index}"


def bearer(root: Path, subject: str, role: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(subject, frozenset({role}), birth_date=birth_date_for_age(30, dt.date.today()))
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=1))}"),)


def tokens_file(root: Path) -> Path:
    return root / "bench-link-tokens.json"


# Servers ---------------------------------------------------------------------------------------


async def serve(which: str, port: int) -> None:
    builds = {"kit-echo": kit_echo(links_pb2.RecordClickRequest, _REPLY), "compliance": build_compliance,
              "affiliate": build_affiliate}
    await serve_until_sigterm("bench-kit-echo" if which == "kit-echo" else which, builds[which], port)


async def seed(compliance: str, affiliate: str, root: Path, users: int, links: int) -> None:
    """Tracking grants for every user; one CPC programme; `links` links by as many creators."""
    async with grpc.aio.insecure_channel(compliance) as channel:
        consent = consent_pb2_grpc.ConsentServiceStub(channel)

        async def grant(index: int) -> None:
            request = consent_pb2.RecordConsentRequest(
                parent=user(index), request_id=str(uuid.uuid4()),
                purpose=consent_pb2.CONSENT_PURPOSE_AFFILIATE_TRACKING, decision=consent_pb2.CONSENT_DECISION_GRANTED,
                notice_version="bench", method=consent_pb2.CONSENT_METHOD_IN_APP_DIALOG, source="bench")
            request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
            await consent.RecordConsent(request, metadata=bearer(root, user(index), Role.VIEWER), timeout=30)

        for start in range(0, users, 64):
            await asyncio.gather(*(grant(index) for index in range(start, min(users, start + 64))))
    async with grpc.aio.insecure_channel(affiliate) as channel:
        program = (await programs_pb2_grpc.ProgramServiceStub(channel).CreateProgram(programs_pb2.CreateProgramRequest(
            parent="merchants/bench", program=programs_pb2.Program(
                display_name="bench", commission_rate_bps=800, cost_per_click_minor=2,
                daily_click_cap_minor=10_000_000, currency_code="EUR",
                attribution_window=Duration(seconds=86_400 * 30),
                attribution_model=programs_pb2.ATTRIBUTION_MODEL_LAST_CLICK, return_window=Duration(seconds=86_400))),
            metadata=bearer(root, "users/bench", Role.MERCHANT), timeout=30)).program.name
        stub = links_pb2_grpc.LinkServiceStub(channel)
        tokens = [(await stub.CreateTrackingLink(links_pb2.CreateTrackingLinkRequest(
            parent=f"creators/bench-creator-{index}", program=program),
            metadata=bearer(root, f"users/bench-creator-{index}", Role.CREATOR), timeout=30)).tracking_link.token
            for index in range(links)]
        # Every user has clicked before (a warm service: the consent cache and data keys hold them).
        for start in range(0, users, 64):
            await asyncio.gather(*(stub.RecordClick(links_pb2.RecordClickRequest(
                request_id=str(uuid.uuid4()), token=tokens[0], user=user(index), user_agent=BROWSER,
                client_ip=f"10.255.{index >> 8}.{index & 255}", country_code="DE",
                click_time=to_timestamp(dt.datetime.now(dt.UTC))),
                metadata=bearer(root, "services/redirect", Role.SERVICE), timeout=30)
                for index in range(start, min(users, start + 64))))
    tokens_file(root).write_text(json.dumps(tokens))


# Load -------------------------------------------------------------------------------------------


async def load(target: str, method: str, in_flight: int, seconds: float, users: int) -> LoadResult:
    root = Path(os.environ["LIMELIGHT_DATA_DIR"])
    metadata = bearer(root, "services/redirect", Role.SERVICE)
    tokens = json.loads(tokens_file(root).read_text())
    base = int(time.time() * 1000) % 1_000_000  # each run's pairs start elsewhere, so rounds do not only repeat
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=links_pb2.RecordClickRequest.SerializeToString,
                                   response_deserializer=links_pb2.RecordClickResponse.FromString)

        async def click(sequence: int) -> object:
            pair = base + sequence
            request = links_pb2.RecordClickRequest(
                request_id=str(uuid.uuid4()), token=tokens[(pair // users) % len(tokens)],
                user=user(pair % users), user_agent=BROWSER,
                client_ip=f"10.{(pair >> 16) & 255}.{(pair >> 8) & 255}.{pair & 255}", country_code="DE",
                click_time=to_timestamp(dt.datetime.now(dt.UTC)))
            return await call(request, metadata=metadata, timeout=30)

        return await drive(click, in_flight=in_flight, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--links", type=int, default=20)
    arguments = parser.parse_args()
    on_plaintext_loopback()
    ports = {KIT_ECHO: reserve_port(), CLICK: reserve_port(), "compliance": reserve_port()}
    targets = {label: f"127.0.0.1:{port}" for label, port in ports.items()}
    methods = {KIT_ECHO: ECHO_METHOD, CLICK: CLICK_METHOD}
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-record-click-") as scratch:
        root = Path(scratch)
        os.environ["LIMELIGHT_DATA_DIR"] = str(root)  # the platform key the tokens are signed with
        os.environ["LIMELIGHT_COMPLIANCE_TARGET"] = targets["compliance"]
        compliance = spawn_server(MODULE, "compliance", ports["compliance"], root)
        servers = {KIT_ECHO: spawn_server(MODULE, "kit-echo", ports[KIT_ECHO], root),
                   CLICK: spawn_server(MODULE, "affiliate", ports[CLICK], root)}
        try:
            asyncio.run(seed(targets["compliance"], targets[CLICK], root, arguments.users, arguments.links))
            serial = run_load_process(MODULE, targets[CLICK], CLICK_METHOD, "1", str(arguments.seconds),
                                      str(arguments.users), server_pid=servers[CLICK].pid)
            best = interleaved_rounds(MODULE, servers, targets, methods, str(arguments.in_flight),
                                      str(arguments.seconds), str(arguments.users), rounds=arguments.rounds)
        finally:
            stop_servers({**servers, "compliance": compliance})
    print(f"RecordClick, plaintext loopback, tracing on, {arguments.users} users x {arguments.links} links, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(f"(a) one call at a time: p50 {serial.p50_ms:.2f} ms, p99 {serial.p99_ms:.2f} ms, "
          f"{serial.per_second:.0f} calls/s, {serial.errors} errors")
    print(f"(b) {arguments.in_flight} in flight, {arguments.seconds:.0f} s per run, best of {arguments.rounds} rounds:")
    print(ratio_table(list(best.items()), best[KIT_ECHO]))
    click, echo = best[CLICK], best[KIT_ECHO]
    print(f"    RecordClick / kit echo: {click.per_second / echo.per_second:.2f}x throughput (target >= 0.8x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        print_result(asyncio.run(load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                                      int(sys.argv[6]))))
    else:
        main()

"""EvaluateDisclosure through a running server, as a ratio to the traced kit echo in the same run.

    python -m tools.bench.evaluate_disclosure [--seconds 5] [--rounds 2] [--in-flight 64]

Two servers run as their own processes, both built by the service kit with tracing on (every
call a SERVER span), token check and protovalidate; one load process at a time keeps 64 calls
in flight against one of them with a service token (`tools.bench.grpc_load`); rounds are
interleaved:

- kit echo: an EvaluateDisclosureRequest handler that answers a fixed response: the most any
  kit-built service can do per call here (the baseline);
- EvaluateDisclosure: the real compliance server (`services.compliance.server.build`: audit
  log, disclosure engine and ad repository, as `limelight up` runs it), deciding each request of
  the case table in turn (every rule, every finding, German messages).

Prints the table (best round of each: throughput, p50/p99 latency, server CPU per call) and
EvaluateDisclosure as a ratio to the kit echo; the issue's target is at least 0.8x.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
from limelight.compliance.v1 import disclosure_pb2

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.ports import reserve_port
from services.compliance import server as compliance_server
from services.compliance.disclosure import servicer as disclosure
from services.compliance.disclosure.cases import load_cases
from services.compliance.disclosure.messages import enum_out
from tools.bench.grpc_load import (
    ECHO_METHOD,
    LoadResult,
    drive,
    interleaved_rounds,
    kit_echo,
    on_plaintext_loopback,
    print_result,
    ratio_table,
    serve_until_sigterm,
    spawn_server,
    stop_servers,
)

MODULE = "tools.bench.evaluate_disclosure"
KIT_ECHO = "kit echo (tracing, auth, validation)"
EVALUATE = "EvaluateDisclosure (case table)"
EVALUATE_METHOD = f"/{disclosure.DISCLOSURE}/EvaluateDisclosure"

_REPLY = disclosure_pb2.EvaluateDisclosureResponse(
    verdict=disclosure_pb2.DISCLOSURE_VERDICT_COMPLIANT, rules_version="echo").SerializeToString()


def requests() -> list[disclosure_pb2.EvaluateDisclosureRequest]:
    """The case table as requests: a realistic mix of captions, labels and declarations."""
    built = []
    for case in load_cases():
        content = case.content
        built.append(disclosure_pb2.EvaluateDisclosureRequest(
            market=enum_out(disclosure_pb2.Market, "MARKET_", case.market),
            content=disclosure_pb2.DisclosureContent(
                content=content.content, caption=content.caption, hashtags=content.hashtags,
                declaration=disclosure_pb2.CommercialDeclaration(
                    relationship=enum_out(disclosure_pb2.CommercialRelationship, "COMMERCIAL_RELATIONSHIP_",
                                          content.declaration.relationship),
                    brand_name=content.declaration.brand_name),
                product_tags=content.product_tags, affiliate_links=content.affiliate_links,
                label_text=content.label_text,
                label_placement=enum_out(disclosure_pb2.LabelPlacement, "LABEL_PLACEMENT_", content.label_placement))))
    return built


# Servers ---------------------------------------------------------------------------------------


async def serve(which: str, port: int) -> None:
    build = {"kit-echo": kit_echo(disclosure_pb2.EvaluateDisclosureRequest, _REPLY), "compliance": compliance_server.build}
    await serve_until_sigterm(f"bench-{which}", build[which], port)


# Load -------------------------------------------------------------------------------------------


async def load(target: str, method: str, in_flight: int, seconds: float) -> LoadResult:
    root = Path(os.environ["LIMELIGHT_DATA_DIR"])
    claims = TokenClaims("services/ingest", frozenset({Role.SERVICE}))
    metadata = (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=1))}"),)
    table = requests()
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=disclosure_pb2.EvaluateDisclosureRequest.SerializeToString,
                                   response_deserializer=disclosure_pb2.EvaluateDisclosureResponse.FromString)

        async def evaluate(sequence: int) -> object:
            return await call(table[sequence % len(table)], metadata=metadata, timeout=30)

        return await drive(evaluate, in_flight=in_flight, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64)
    arguments = parser.parse_args()
    on_plaintext_loopback()
    ports = {KIT_ECHO: reserve_port(), EVALUATE: reserve_port()}
    methods = {KIT_ECHO: ECHO_METHOD, EVALUATE: EVALUATE_METHOD}
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-evaluate-disclosure-") as scratch:
        root = Path(scratch)
        os.environ["LIMELIGHT_DATA_DIR"] = str(root)  # the platform key the tokens are signed with
        servers = {KIT_ECHO: spawn_server(MODULE, "kit-echo", ports[KIT_ECHO], root),
                   EVALUATE: spawn_server(MODULE, "compliance", ports[EVALUATE], root)}
        try:
            best = interleaved_rounds(MODULE, servers, {label: f"127.0.0.1:{port}" for label, port in ports.items()},
                                      methods, str(arguments.in_flight), str(arguments.seconds),
                                      rounds=arguments.rounds)
        finally:
            stop_servers(servers)
    print(f"EvaluateDisclosure vs kit echo, {arguments.in_flight} in flight, {arguments.seconds:.0f} s per run, best "
          f"of {arguments.rounds} interleaved rounds, tracing on, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(ratio_table(list(best.items()), best[KIT_ECHO]))
    evaluate, echo = best[EVALUATE], best[KIT_ECHO]
    print(f"EvaluateDisclosure / kit echo: {evaluate.per_second / echo.per_second:.2f}x throughput, "
          f"{echo.server_cpu_us_per_call / evaluate.server_cpu_us_per_call:.2f}x CPU per call "
          f"({evaluate.server_cpu_us_per_call:.0f} vs {echo.server_cpu_us_per_call:.0f} us); "
          f"p99 {evaluate.p99_ms:.2f} vs {echo.p99_ms:.2f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        print_result(asyncio.run(load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))))
    else:
        main()

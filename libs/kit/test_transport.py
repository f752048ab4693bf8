"""TLS on real loopback servers: mutual TLS between services, server-auth TLS for users, no plaintext off-host."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from opentelemetry import trace

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, TokenVerifier, mint_token, platform_signing_key
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.context import CallIdentity, current_principal, reset_identity, set_identity
from libs.kit.pki import ensure_dev_pki, service_identity_uri
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.kit.testing import error_info, raw_unary
from libs.kit.transport import TLS_ENV, PlaintextRefused, TlsMode, Transport, is_loopback_target, tls_mode

PROBE = "limelight.test.v1.TlsProbeService"


async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    principal = current_principal()
    acting_for = principal.on_behalf_of.subject if principal.on_behalf_of else "-"
    return f"{principal.subject} service={principal.is_service} for {acting_for}".encode()


def probe_build(runtime: ServiceRuntime) -> ServiceDefinition:
    generic = grpc.method_handlers_generic_handler(PROBE, {"Who": grpc.unary_unary_rpc_method_handler(who)})
    return ServiceDefinition(service_names=[PROBE], register=lambda server: server.add_generic_rpc_handlers((generic,)))


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[RunningService]:
    ensure_dev_pki(tmp_path, ["probe", "gifts"])
    running = await start_service("probe", probe_build, port=0, data_root=tmp_path,
                                  transport=Transport.mutual_tls(tmp_path))
    yield running
    await running.stop(grace=0)


def mint(root: Path, subject: str, *roles: Role) -> str:
    return mint_token(platform_signing_key(root), TokenClaims(subject, frozenset(roles)), ttl=dt.timedelta(minutes=5))


def clients_as(service: str, root: Path, target: str, transport: Transport) -> ServiceClients:
    return ServiceClients(tracer=trace.get_tracer("test"), targets={"probe": target}, transport=transport,
                          service=service, service_token=ServiceTokenSource(service, platform_signing_key(root)))


async def who_over(channel: grpc.aio.Channel, bearer: str | None = None) -> bytes:
    metadata = (("authorization", f"Bearer {bearer}"),) if bearer else None
    reply: bytes = await raw_unary(channel, f"/{PROBE}/Who")(b"", metadata=metadata, timeout=5)
    return reply


async def test_a_service_over_mutual_tls_is_a_service_and_may_act_for_a_user(
    probe: RunningService, tmp_path: Path
) -> None:
    clients = clients_as("gifts", tmp_path, probe.mesh_target, Transport.mutual_tls(tmp_path))
    user_token = mint(tmp_path, "users/ada", Role.VIEWER)
    user = TokenVerifier(platform_signing_key(tmp_path).public_key()).verify(user_token)
    serving_user = set_identity(CallIdentity(user, user_token))
    try:
        reply = await who_over(clients.channel("probe"))
    finally:
        reset_identity(serving_user)
        await clients.close()
    assert reply == b"services/gifts service=True for users/ada"


async def test_a_service_token_without_its_certificate_is_no_service(probe: RunningService, tmp_path: Path) -> None:
    stolen = mint(tmp_path, "services/gifts", Role.SERVICE)
    async with Transport.mutual_tls(tmp_path).user_channel("probe", probe.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await who_over(channel, stolen)
        user_reply = await who_over(channel, mint(tmp_path, "users/ada", Role.VIEWER))
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_info(raised.value).reason == "SERVICE_CERTIFICATE_REQUIRED"
    assert user_reply == b"users/ada service=False for -", "end users get server-auth TLS and a bearer token"


async def test_another_services_certificate_does_not_make_a_service_token_valid(
    probe: RunningService, tmp_path: Path
) -> None:
    ensure_dev_pki(tmp_path, ["ingest"])
    clients = ServiceClients(tracer=trace.get_tracer("test"), targets={"probe": probe.mesh_target},
                             transport=Transport.mutual_tls(tmp_path), service="ingest",
                             service_token=lambda: mint(tmp_path, "services/gifts", Role.SERVICE))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await who_over(clients.channel("probe"))
    finally:
        await clients.close()
    assert error_info(raised.value).reason == "SERVICE_CERTIFICATE_REQUIRED"


async def test_the_mesh_port_refuses_a_client_without_a_certificate(probe: RunningService, tmp_path: Path) -> None:
    async with Transport.mutual_tls(tmp_path).user_channel("probe", probe.mesh_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await who_over(channel, mint(tmp_path, "users/ada", Role.VIEWER))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused_both_ways(probe: RunningService, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    ensure_dev_pki(elsewhere, ["gifts"])
    foreign = clients_as("gifts", tmp_path, probe.mesh_target, Transport.mutual_tls(elsewhere))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as client_side:
            await who_over(foreign.channel("probe"))
    finally:
        await foreign.close()
    async with Transport.mutual_tls(elsewhere).user_channel("probe", probe.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as server_side:
            await who_over(channel, mint(tmp_path, "users/ada", Role.VIEWER))
    assert client_side.value.code() is grpc.StatusCode.UNAVAILABLE
    assert server_side.value.code() is grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused_to_any_non_loopback_target(tmp_path: Path) -> None:
    plaintext = Transport.plaintext(tmp_path)
    for target in ("10.0.0.7:50053", "dns:///gifts.internal:443", "gifts:50053", "0.0.0.0:50053"):
        clients = clients_as("gifts", tmp_path, target, plaintext)
        with pytest.raises(PlaintextRefused):
            clients.channel("probe")
    forced = Transport(tls=False, pki=plaintext.pki, allow_plaintext_network=True)
    assert clients_as("gifts", tmp_path, "10.0.0.7:50053", forced).channel("probe") is not None


async def test_a_plaintext_server_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    with pytest.raises(PlaintextRefused):
        await start_service("probe", probe_build, port=0, host="0.0.0.0", data_root=tmp_path,
                            transport=Transport.plaintext(tmp_path))


@pytest.mark.parametrize("target", ["127.0.0.1:1", "localhost:1", "[::1]:1", "dns:///localhost:1",
                                    "ipv4:127.0.0.1:1,127.0.0.2:2", "unix:/tmp/socket"])
def test_loopback_targets_are_recognised(target: str) -> None:
    assert is_loopback_target(target)


def test_the_dev_pki_is_made_once_with_owner_only_keys_and_spiffe_identities(tmp_path: Path) -> None:
    files = ensure_dev_pki(tmp_path, ["gifts"])
    ca_before = files.ca_certificate.read_bytes()
    leaf_before = files.certificate("gifts").read_bytes()
    ensure_dev_pki(tmp_path, ["gifts", "shop"])
    assert files.ca_certificate.read_bytes() == ca_before
    assert files.certificate("gifts").read_bytes() == leaf_before
    for key in (files.ca_key, files.key("gifts"), files.key("shop")):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(files.root).st_mode) == 0o700
    leaf = x509.load_pem_x509_certificate(leaf_before)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [service_identity_uri("gifts")]


def test_a_leaf_close_to_expiry_is_issued_again(tmp_path: Path) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=85)
    files = ensure_dev_pki(tmp_path, ["gifts"], now=long_ago)
    old = files.certificate("gifts").read_bytes()
    ensure_dev_pki(tmp_path, ["gifts"])
    assert files.certificate("gifts").read_bytes() != old


async def test_a_blocking_user_channel_reaches_a_tls_server(probe: RunningService, tmp_path: Path) -> None:
    bearer = mint(tmp_path, "users/ada", Role.VIEWER)

    def call_blocking() -> bytes:  # off the event loop the server runs on
        with Transport.mutual_tls(tmp_path).blocking_user_channel("probe", probe.target) as channel:
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{PROBE}/Who")
            return call(b"", metadata=(("authorization", f"Bearer {bearer}"),), timeout=5)

    assert await asyncio.to_thread(call_blocking) == b"users/ada service=False for -"


def test_tls_is_on_unless_plaintext_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TLS_ENV, raising=False)
    assert tls_mode() is TlsMode.ON
    monkeypatch.setenv(TLS_ENV, "off")
    assert tls_mode() is TlsMode.OFF
    monkeypatch.setenv(TLS_ENV, "maybe")
    with pytest.raises(ValueError):
        tls_mode()


async def test_a_target_naming_several_replicas_spreads_calls_over_all_of_them(tmp_path: Path) -> None:
    servers, ports = [], []
    for index in range(2):
        server = grpc.aio.server()
        answer = str(index).encode()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("probe.v1.Which", {
            "Call": grpc.unary_unary_rpc_method_handler(lambda request, context, answer=answer: answer)})])
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    # The kit's clients pass their retry policy as a service config: round robin is merged into it.
    retry = ("grpc.service_config", json.dumps({"methodConfig": [{"name": [{}], "retryPolicy": {
        "maxAttempts": 2, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]}}]}))
    try:
        async with Transport.plaintext(tmp_path).service_channel("probe", target, options=[retry]) as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/probe.v1.Which/Call")
            answers = [await call(b"", timeout=5) for _ in range(20)]
        # The first calls may all go to whichever replica connected first; then they alternate.
        assert min(answers.count(b"0"), answers.count(b"1")) >= 5, answers
    finally:
        for server in servers:
            await server.stop(None)

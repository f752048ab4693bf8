"""Outgoing calls: retried only when UNAVAILABLE, always under a deadline, carrying identities."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, TokenVerifier, mint_token, platform_signing_key
from libs.kit.access import AccessPolicy
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.context import CallIdentity, current_principal, reset_identity, set_identity
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.kit.telemetry import read_spans
from libs.kit.testing import raw_unary

FLAKY = "limelight.test.v1.FlakyService"


class Flaky:
    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    async def unavailable_twice(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        count = self.attempts[request.decode()] = self.attempts.get(request.decode(), 0) + 1
        if count <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return f"attempt {count}".encode()

    async def always_internal(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.attempts[request.decode()] = self.attempts.get(request.decode(), 0) + 1
        await context.abort(grpc.StatusCode.INTERNAL, "broken")
        raise AssertionError("abort raises")

    async def hang(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await asyncio.sleep(30)
        return b""

    async def whoami(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        principal = current_principal()
        acting_for = principal.on_behalf_of.subject if principal.on_behalf_of else "-"
        return f"{principal.subject} for {acting_for}".encode()


@pytest.fixture
async def flaky(tmp_path: Path) -> AsyncIterator[tuple[RunningService, Flaky]]:
    handlers = Flaky()
    methods = {
        "UnavailableTwice": handlers.unavailable_twice,
        "AlwaysInternal": handlers.always_internal,
        "Hang": handlers.hang,
        "WhoAmI": handlers.whoami,
    }

    async def whoami_stream(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        yield current_principal().subject.encode()

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        generic = grpc.method_handlers_generic_handler(
            FLAKY, {**{name: grpc.unary_unary_rpc_method_handler(behavior) for name, behavior in methods.items()},
                    "WhoAmIStream": grpc.unary_stream_rpc_method_handler(whoami_stream)}
        )
        return ServiceDefinition(
            service_names=[FLAKY],
            register=lambda server: server.add_generic_rpc_handlers((generic,)),
            policy=AccessPolicy(public=frozenset({f"/{FLAKY}/{name}" for name in methods if name != "WhoAmI"})),
        )

    running = await start_service("flaky", build, port=0, data_root=tmp_path, targets={})
    yield running, handlers
    await running.stop(grace=0)


@pytest.fixture
async def caller(flaky: tuple[RunningService, Flaky]) -> AsyncIterator[ServiceClients]:
    """Clients as another service ("caller") would hold them; short default deadline."""
    running, _ = flaky
    clients = ServiceClients(
        tracer=running.runtime.telemetry.tracer,
        service_token=ServiceTokenSource("caller", platform_signing_key(running.runtime.data_root)),
        targets={"flaky": running.target},
        default_timeout=0.5,
    )
    yield clients
    await clients.close()


async def test_unavailable_is_retried_until_it_succeeds(caller: ServiceClients) -> None:
    reply = await raw_unary(caller.channel("flaky"), f"/{FLAKY}/UnavailableTwice")(b"k1")
    assert reply == b"attempt 3"


async def test_other_failures_are_not_retried(flaky: tuple[RunningService, Flaky], caller: ServiceClients) -> None:
    _, handlers = flaky
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await raw_unary(caller.channel("flaky"), f"/{FLAKY}/AlwaysInternal")(b"k2")
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert handlers.attempts["k2"] == 1


async def test_every_call_gets_the_default_deadline(caller: ServiceClients) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await raw_unary(caller.channel("flaky"), f"/{FLAKY}/Hang")(b"")
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert asyncio.get_running_loop().time() - started < 5


async def test_a_service_call_carries_its_identity_and_the_user_it_serves(caller: ServiceClients, tmp_path: Path) -> None:
    user_token = mint_token(
        platform_signing_key(tmp_path),
        TokenClaims("users/ada", frozenset({Role.VIEWER}), birth_date=dt.date(1990, 1, 1)),
        ttl=dt.timedelta(minutes=5),
    )
    serving_user = set_identity(
        CallIdentity(TokenVerifier(platform_signing_key(tmp_path).public_key()).verify(user_token), user_token)
    )
    try:
        reply = await raw_unary(caller.channel("flaky"), f"/{FLAKY}/WhoAmI")(b"")
    finally:
        reset_identity(serving_user)
    assert reply == b"services/caller for users/ada"


async def test_a_streaming_call_carries_the_service_identity_too(caller: ServiceClients) -> None:
    """grpc.aio files an interceptor under one call kind only; the kit hands it over for each."""
    call: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = caller.channel("flaky").unary_stream(
        f"/{FLAKY}/WhoAmIStream")
    assert [reply async for reply in call(b"")] == [b"services/caller"]


async def test_client_and_server_spans_share_one_trace(flaky: tuple[RunningService, Flaky], caller: ServiceClients, tmp_path: Path) -> None:
    running, _ = flaky
    await raw_unary(caller.channel("flaky"), f"/{FLAKY}/UnavailableTwice")(b"k3")
    running.runtime.telemetry.provider.force_flush()
    spans = [span for span in read_spans(tmp_path) if str(span["name"]).endswith("UnavailableTwice")]
    client = next(span for span in spans if span["kind"] == "CLIENT")
    servers = [span for span in spans if span["kind"] == "SERVER" and span["trace_id"] == client["trace_id"]]
    assert len(servers) == 3, "one server span per attempt, all in the caller's trace"
    assert all(span["parent_span_id"] == client["span_id"] for span in servers)

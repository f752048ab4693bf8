"""The kit end to end: a real grpc.aio server on a loopback port, called through real channels."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.errors import FailedPrecondition
from libs.kit.access import AccessPolicy
from libs.kit.context import current_principal
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.kit.testing import error_info, raw_unary

PROBE = "limelight.test.v1.ProbeService"


class ProbeHandlers:
    """Raw-bytes methods: enough to exercise the kit without generated stubs."""

    def __init__(self) -> None:
        self.slow_started = asyncio.Event()

    async def whoami(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return current_principal().subject.encode()

    async def slow(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.slow_started.set()
        await asyncio.sleep(float(request.decode()))
        return b"finished"

    async def refuse(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise FailedPrecondition("wallet is empty", reason="WALLET_EMPTY", metadata={"balance": "0"})

    async def crash(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise RuntimeError("bug")


def probe_definition(handlers: ProbeHandlers) -> ServiceDefinition:
    methods: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        name: grpc.unary_unary_rpc_method_handler(behavior)
        for name, behavior in {
            "WhoAmI": handlers.whoami, "Slow": handlers.slow, "Refuse": handlers.refuse, "Crash": handlers.crash,
        }.items()
    }
    return ServiceDefinition(
        service_names=[PROBE],
        register=lambda server: server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(PROBE, methods),)
        ),
        policy=AccessPolicy(
            public=frozenset({f"/{PROBE}/Slow"}),
            roles={f"/{PROBE}/Refuse": frozenset({Role.MERCHANT})},
        ),
    )


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[tuple[RunningService, ProbeHandlers]]:
    handlers = ProbeHandlers()

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        return probe_definition(handlers)

    running = await start_service("probe", build, port=0, data_root=tmp_path)
    yield running, handlers
    await running.stop(grace=0)


def token(tmp_path: Path, *, roles: set[Role], ttl: dt.timedelta = dt.timedelta(minutes=5),
          now: dt.datetime | None = None, key: Ed25519PrivateKey | None = None) -> str:
    claims = TokenClaims(subject="users/alice", roles=frozenset(roles), birth_date=dt.date(1990, 1, 1))
    return mint_token(key or platform_signing_key(tmp_path), claims, ttl=ttl, now=now)


async def call(target: str, method: str, payload: bytes = b"", *, bearer: str | None = None) -> bytes:
    metadata = (("authorization", f"Bearer {bearer}"),) if bearer else None
    async with grpc.aio.insecure_channel(target) as channel:
        return await raw_unary(channel, f"/{PROBE}/{method}")(payload, metadata=metadata, timeout=10)


async def test_reports_serving_for_the_server_and_each_service(probe: tuple[RunningService, ProbeHandlers]) -> None:
    running, _ = probe
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", PROBE):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(probe: tuple[RunningService, ProbeHandlers]) -> None:
    running, _ = probe
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert {PROBE, "grpc.health.v1.Health"} <= set(names)


async def test_a_valid_token_reaches_the_handler_as_a_principal(
    probe: tuple[RunningService, ProbeHandlers], tmp_path: Path
) -> None:
    running, _ = probe
    assert await call(running.target, "WhoAmI", bearer=token(tmp_path, roles={Role.VIEWER})) == b"users/alice"


@pytest.mark.parametrize("case", ["missing", "forged", "expired", "malformed"])
async def test_bad_tokens_are_unauthenticated(
    probe: tuple[RunningService, ProbeHandlers], tmp_path: Path, case: str
) -> None:
    running, _ = probe
    bearer = {
        "missing": None,
        "forged": token(tmp_path, roles={Role.VIEWER}, key=Ed25519PrivateKey.generate()),
        "expired": token(tmp_path, roles={Role.VIEWER}, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
        "malformed": "not-a-jwt",
    }[case]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(running.target, "WhoAmI", bearer=bearer)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    info = error_info(raised.value)
    assert info.reason.startswith("TOKEN_")


async def test_the_wrong_role_is_permission_denied(
    probe: tuple[RunningService, ProbeHandlers], tmp_path: Path
) -> None:
    running, _ = probe
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(running.target, "Refuse", bearer=token(tmp_path, roles={Role.VIEWER}))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(raised.value).metadata["required_roles"] == "merchant"


async def test_a_domain_error_becomes_its_status_witherror_info(
    probe: tuple[RunningService, ProbeHandlers], tmp_path: Path
) -> None:
    running, _ = probe
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(running.target, "Refuse", bearer=token(tmp_path, roles={Role.MERCHANT}))
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(raised.value)
    assert (info.reason, info.domain, dict(info.metadata)) == ("WALLET_EMPTY", "probe.limelight.dev", {"balance": "0"})


async def test_an_unexpected_error_is_internal_and_names_the_trace(
    probe: tuple[RunningService, ProbeHandlers], tmp_path: Path
) -> None:
    running, _ = probe
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(running.target, "Crash", bearer=token(tmp_path, roles={Role.VIEWER}))
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert "bug" not in (raised.value.details() or "")
    assert len(error_info(raised.value).metadata["trace_id"]) == 32


async def test_shutdown_drains_a_slow_call_and_reports_not_serving(
    probe: tuple[RunningService, ProbeHandlers],
) -> None:
    running, handlers = probe
    slow = asyncio.create_task(call(running.target, "Slow", b"1.0"))
    await asyncio.wait_for(handlers.slow_started.wait(), 5)
    async with grpc.aio.insecure_channel(running.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=PROBE))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(running.stop(grace=5))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
    assert await slow == b"finished"
    await stopping

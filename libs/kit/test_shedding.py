"""Load shedding on a real server: RESOURCE_EXHAUSTED with RetryInfo past the bounds, probes never shed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.auth.principal import Principal, Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.errors import DomainError, ResourceExhausted
from libs.kit.access import AccessPolicy
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.kit.shedding import PeerRateLimit, ShedSettings, peer_host
from libs.kit.testing import error_info, raw_unary, status_detail

BUSY = "limelight.test.v1.BusyService"
@dataclass
class Busy:
    release: asyncio.Event = field(default_factory=asyncio.Event)
    bound_reached: asyncio.Event = field(default_factory=asyncio.Event)
    bound: int = 4
    started: int = 0
    denied: list[str] = field(default_factory=list)

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.started += 1
        if self.started == self.bound:
            self.bound_reached.set()
        await self.release.wait()
        return b"done"

    async def ping(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return b"pong"

    async def on_denied(self, method: str, principal: Principal | None, error: DomainError) -> None:
        self.denied.append(error.reason)


async def start_busy(tmp_path: Path, busy: Busy, settings: ShedSettings) -> RunningService:
    methods = {"Hold": busy.hold, "Ping": busy.ping, "Private": busy.ping}
    generic = grpc.method_handlers_generic_handler(
        BUSY, {name: grpc.unary_unary_rpc_method_handler(behavior) for name, behavior in methods.items()}
    )

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        return ServiceDefinition(
            service_names=[BUSY], register=lambda server: server.add_generic_rpc_handlers((generic,)),
            policy=AccessPolicy(public=frozenset({f"/{BUSY}/Ping", f"/{BUSY}/Hold"})), on_denied=busy.on_denied,
        )

    return await start_service("busy", build, port=0, data_root=tmp_path, shedding=settings)


@pytest.fixture
async def bounded(tmp_path: Path) -> AsyncIterator[tuple[RunningService, Busy]]:
    busy = Busy()
    running = await start_busy(tmp_path, busy, ShedSettings(max_concurrent_calls=busy.bound,
                                                             overload_retry=dt.timedelta(milliseconds=300)))
    yield running, busy
    busy.release.set()
    await running.stop(grace=0)


def viewer_token(root: Path) -> str:
    claims = TokenClaims("users/ada", frozenset({Role.VIEWER}))
    return mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(minutes=5))


async def test_the_call_past_the_bound_is_resource_exhausted_with_a_retry_delay(
    bounded: tuple[RunningService, Busy], tmp_path: Path
) -> None:
    running, busy = bounded
    metadata = (("authorization", f"Bearer {viewer_token(tmp_path)}"),)
    async with grpc.aio.insecure_channel(running.target) as channel:
        hold = raw_unary(channel, f"/{BUSY}/Hold")
        holding = [asyncio.ensure_future(hold(b"", metadata=metadata, timeout=10)) for _ in range(4)]
        await asyncio.wait_for(busy.bound_reached.wait(), 10)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await hold(b"", metadata=metadata, timeout=10)
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=BUSY))
        busy.release.set()
        assert await asyncio.gather(*holding) == [b"done"] * 4
        assert await hold(b"", metadata=metadata, timeout=10) == b"done", "room again once calls finished"
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(raised.value).reason == "SERVER_OVERLOADED"
    assert status_detail(raised.value, error_details_pb2.RetryInfo).retry_delay.ToMilliseconds() == 300
    assert health.status == health_pb2.HealthCheckResponse.SERVING, "health checks are never shed"
    assert busy.started == 5


async def test_a_tokenless_flood_from_one_peer_is_rate_limited_and_not_audited(tmp_path: Path) -> None:
    busy = Busy()
    # A rate this low refills nothing during the test, so exactly the burst is answered.
    running = await start_busy(tmp_path, busy, ShedSettings(tokenless_rate=0.01, tokenless_burst=5.0))
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            ping = raw_unary(channel, f"/{BUSY}/Ping")
            results = await asyncio.gather(*(ping(b"", timeout=10) for _ in range(12)), return_exceptions=True)
            refused_private = [error for error in await asyncio.gather(
                *(raw_unary(channel, f"/{BUSY}/Private")(b"", timeout=10) for _ in range(3)),
                return_exceptions=True)]
            authenticated = await ping(b"", metadata=(("authorization", f"Bearer {viewer_token(tmp_path)}"),),
                                       timeout=10)
            probes = [await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                      for _ in range(10)]
    finally:
        await running.stop(grace=0)
    answered = [result for result in results if result == b"pong"]
    limited = [result for result in results if isinstance(result, grpc.aio.AioRpcError)]
    assert len(answered) == 5
    assert len(limited) == 7
    assert all(error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for error in limited)
    assert {error_info(error).reason for error in limited} == {"RATE_LIMITED"}
    assert status_detail(limited[0], error_details_pb2.RetryInfo).retry_delay.ToNanoseconds() > 0
    assert all(isinstance(error, grpc.aio.AioRpcError) and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
               for error in refused_private), "tokenless calls to private methods share the bucket"
    assert authenticated == b"pong", "a call with a token is not held to the tokenless rate"
    assert all(probe.status == health_pb2.HealthCheckResponse.SERVING for probe in probes)
    assert busy.denied == [], "shed calls do not reach the denial audit hook"


def test_a_bucket_refills_at_its_rate_and_names_the_wait() -> None:
    now = [0.0]
    limit = PeerRateLimit(rate=2.0, burst=2.0, clock=lambda: now[0])
    limit.take("ipv4:10.0.0.7")
    limit.take("ipv4:10.0.0.7")
    with pytest.raises(ResourceExhausted) as raised:
        limit.take("ipv4:10.0.0.7")
    assert raised.value.retry_delay == dt.timedelta(seconds=0.5)
    limit.take("ipv4:10.0.0.8")
    now[0] = 0.5
    limit.take("ipv4:10.0.0.7")


def test_a_peer_is_keyed_by_its_address_without_the_port() -> None:
    assert peer_host("ipv4:10.0.0.7:5123") == "ipv4:10.0.0.7"
    assert peer_host("ipv6:[::1]:5123") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/socket") == "unix:/tmp/socket"


def test_settings_come_from_the_environment_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMELIGHT_GIFTS_MAX_CONCURRENT_CALLS", "64")
    monkeypatch.setenv("LIMELIGHT_GIFTS_TOKENLESS_RATE", "3.5")
    settings = ShedSettings.from_environment("gifts")
    assert (settings.max_concurrent_calls, settings.tokenless_rate) == (64, 3.5)
    assert ShedSettings.from_environment("shop") == ShedSettings()


async def test_a_shed_call_downstream_reaches_the_caller_with_its_retry_delay(tmp_path: Path) -> None:
    downstream = await start_busy(tmp_path, Busy(), ShedSettings(max_concurrent_calls=0))
    relay_name = "limelight.test.v1.RelayService"

    def build_relay(runtime: ServiceRuntime) -> ServiceDefinition:
        async def relay(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return await raw_unary(runtime.clients.channel("busy"), f"/{BUSY}/Ping")(request)

        generic = grpc.method_handlers_generic_handler(relay_name, {"Relay": grpc.unary_unary_rpc_method_handler(relay)})
        return ServiceDefinition(service_names=[relay_name],
                                 register=lambda server: server.add_generic_rpc_handlers((generic,)))

    upstream = await start_service("relay", build_relay, port=0, data_root=tmp_path,
                                   targets={"busy": downstream.mesh_target})
    try:
        async with grpc.aio.insecure_channel(upstream.target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await raw_unary(channel, f"/{relay_name}/Relay")(
                    b"", metadata=(("authorization", f"Bearer {viewer_token(tmp_path)}"),), timeout=10)
    finally:
        await upstream.stop(grace=0)
        await downstream.stop(grace=0)
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(raised.value).reason == "SERVER_OVERLOADED"
    assert status_detail(raised.value, error_details_pb2.RetryInfo).retry_delay.ToMilliseconds() == 250


async def test_a_flood_of_bad_tokens_draws_on_the_same_bucket(tmp_path: Path) -> None:
    busy = Busy()
    running = await start_busy(tmp_path, busy, ShedSettings(tokenless_rate=0.01, tokenless_burst=3.0))
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            ping = raw_unary(channel, f"/{BUSY}/Ping")
            results = await asyncio.gather(
                *(ping(b"", metadata=(("authorization", "Bearer forged"),), timeout=10) for _ in range(8)),
                return_exceptions=True)
    finally:
        await running.stop(grace=0)
    codes = sorted(result.code().name for result in results if isinstance(result, grpc.aio.AioRpcError))
    assert codes == ["RESOURCE_EXHAUSTED"] * 5 + ["UNAUTHENTICATED"] * 3
    assert busy.denied == ["TOKEN_INVALID"] * 3, "only the refusals inside the bucket are audited"

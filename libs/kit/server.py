"""Declaring and running a Limelight service.

A service module provides one function, `build(runtime) -> ServiceDefinition`: it opens
its store, constructs its servicers from the runtime's pieces, and says which methods
are public and which roles each method needs. The kit does the rest:

    from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition

    GIFTS = "limelight.gifts.v1.GiftsService"

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        store = GiftsStore.open(runtime.data_root)
        return package_definition(
            "limelight.gifts.v1",
            {GIFTS: GiftsServicer(Gifts(store), runtime.clients)},
            policy=AccessPolicy(roles=method_paths(GIFTS, {"SendGift": frozenset({Role.VIEWER})})),
            on_stop=store.close,
        )

`limelight serve gifts` imports `services.gifts.server.build` and runs it with
`run_service_process`; `limelight up` does that for all six.

Handlers read the caller with `libs.kit.context.current_principal()`, raise `libs.errors`
classes, and call other services through `runtime.clients.stub("compliance", Stub)`.
Unimplemented RPCs need no code: the generated base servicer answers UNIMPLEMENTED.

The server gets the standard health service (SERVING while up, NOT_SERVING from the
moment shutdown starts, `Watch` streams changes), server reflection, and on SIGTERM or
SIGINT a graceful shutdown that refuses new calls and drains the calls in flight.

Transport (`libs.kit.transport`, `LIMELIGHT_TLS`): with TLS on, a server-auth TLS port for
end users and a mutual-TLS mesh port for services; with TLS off, one plaintext port that
may only be on loopback. Load shedding (`libs.kit.shedding`) is configured per service.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from libs.auth.tokens import TokenVerifier, platform_signing_key
from libs.kit import config
from libs.kit.access import AccessPolicy, Authenticator, MethodAccess, access_table
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.interceptors import DeniedListener, HandlerRegistry, ServerCallPipeline
from libs.kit.registry import registrar
from libs.kit.shedding import ShedSettings
from libs.kit.telemetry import Telemetry, configure_logging, configure_telemetry
from libs.kit.transport import Transport
from libs.storage.paths import data_dir

logger = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 10.0


@dataclass
class ServiceRuntime:
    """What the kit hands to a service's `build`: its identity, files, tracer and clients."""

    name: str
    data_root: Path
    telemetry: Telemetry
    clients: ServiceClients


# Sets SERVING (True) or NOT_SERVING (False) for every service of the definition.
HealthReport = Callable[[bool], Awaitable[None]]


@dataclass
class ServiceDefinition:
    service_names: Sequence[str]
    register: Callable[[HandlerRegistry], None]
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    on_start: Callable[[], Awaitable[None]] | None = None
    on_stop: Callable[[], Awaitable[None] | None] | None = None
    on_denied: DeniedListener | None = None
    # Told, once the server serves, how to report its services' health while it runs (a
    # dependency gone: NOT_SERVING until it is back); a shutdown's NOT_SERVING stays final.
    on_serving: Callable[[HealthReport], None] | None = None

    def access_table(self) -> list[MethodAccess]:
        """The access rule of every method this service exposes, from the policy the kit enforces."""
        return access_table(self.service_names, self.policy)


Builder = Callable[[ServiceRuntime], ServiceDefinition]


def package_definition(
    package: str, implementations: Mapping[str, object] | None = None, **options: Any
) -> ServiceDefinition:
    """A definition exposing every service of a generated package (`limelight.shop.v1`).

    `implementations` maps full service names to servicers; the others answer UNIMPLEMENTED.
    """
    names, register = registrar(package, implementations or {})
    return ServiceDefinition(service_names=names, register=register, **options)


@dataclass
class RunningService:
    name: str
    port: int
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    definition: ServiceDefinition
    runtime: ServiceRuntime
    mesh_port: int | None = None

    @property
    def target(self) -> str:
        """Where end users dial (server-auth TLS, or plaintext with TLS off)."""
        return f"127.0.0.1:{self.port}"

    @property
    def mesh_target(self) -> str:
        """Where other services dial: the mutual-TLS port, or the one port with TLS off."""
        return f"127.0.0.1:{self.mesh_port}" if self.mesh_port is not None else self.target

    async def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within `grace`."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.definition.on_stop is not None:
            result = self.definition.on_stop()
            if result is not None:
                await result
        await self.runtime.clients.close()
        self.runtime.telemetry.shutdown()


async def start_service(
    name: str,
    build: Builder,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    data_root: Path | None = None,
    targets: dict[str, str] | None = None,
    sample_ratio: float | None = None,
    transport: Transport | None = None,
    mesh_port: int | None = None,
    shedding: ShedSettings | None = None,
) -> RunningService:
    """Build and start `name`; `port=0` picks a free port (tests), None takes the configured one.

    `transport` and `shedding` default to the environment's settings; `mesh_port` (TLS
    only) defaults to the configured mesh port when `port` is, else to a free one.
    """
    root = data_root or data_dir()
    transport = transport or Transport.from_environment(root)
    transport.refuse_plaintext_listen(host)
    telemetry = configure_telemetry(name, data_root=root, sample_ratio=sample_ratio)
    signing_key = platform_signing_key(root)
    clients = ServiceClients(
        tracer=telemetry.tracer, service_token=ServiceTokenSource(name, signing_key), targets=targets,
        transport=transport, service=name,
    )
    runtime = ServiceRuntime(name=name, data_root=root, telemetry=telemetry, clients=clients)
    definition = build(runtime)

    pipeline = ServerCallPipeline(
        service=name,
        server_spans=telemetry.server_spans,
        authenticator=Authenticator(TokenVerifier(signing_key.public_key())),
        policy=definition.policy,
        on_denied=definition.on_denied,
        shedding=shedding or ShedSettings.from_environment(name),
        verifies_certificates=transport.tls,
    )
    server = grpc.aio.server()
    registering = pipeline.registering_on(server)
    definition.register(registering)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registering)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer([*definition.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]),
        registering,
    )
    if mesh_port is None:
        mesh_port = config.mesh_port(name) if port is None else 0
    bound, bound_mesh = transport.bind(
        server, name, host=host, port=config.listen_port(name) if port is None else port, mesh_port=mesh_port
    )
    if definition.on_start is not None:
        await definition.on_start()
    await server.start()
    for service_name in ["", *definition.service_names]:
        await health_servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    if definition.on_serving is not None:
        async def report(serving: bool) -> None:
            status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
            for service_name in definition.service_names:
                await health_servicer.set(service_name, status)

        definition.on_serving(report)
    logger.info("%s serving on %s:%d%s", name, host, bound,
                f" (TLS; mutual-TLS mesh port {bound_mesh})" if bound_mesh is not None else " (plaintext)")
    return RunningService(name, bound, server, health_servicer, definition, runtime, bound_mesh)


async def serve_until_signalled(name: str, build: Builder, *, grace: float = DEFAULT_GRACE_SECONDS) -> None:
    running = await start_service(name, build)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    mesh = f", services on {running.mesh_target}" if running.mesh_port is not None else ""
    print(f"{name} listening on {running.target}{mesh}", flush=True)
    await stopping.wait()
    logger.info("%s shutting down, draining calls for up to %.0f s", name, grace)
    await running.stop(grace)


def run_service_process(name: str, build: Builder) -> None:
    """Run one service in this process until SIGTERM or SIGINT (`limelight serve <name>`)."""
    configure_logging()
    asyncio.run(serve_until_signalled(name, build))

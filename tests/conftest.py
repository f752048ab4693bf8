"""The whole platform in this test process: six real servers on loopback ports.

Started once per test session; each server has its own tracer provider, store and
clients, exactly as under `limelight up`, and the servers call each other over gRPC.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.config import SERVICES
from libs.kit.server import RunningService, start_service
from tools.supervisor import free_port


@dataclass
class InProcessPlatform:
    data_root: Path
    services: dict[str, RunningService]

    def target(self, service: str) -> str:
        return self.services[service].target

    def token(self, subject: str = "users/ada", *roles: Role, age: int = 30) -> str:
        claims = TokenClaims(
            subject=subject,
            roles=frozenset(roles or {Role.VIEWER}),
            birth_date=birth_date_for_age(age, dt.date.today()),
            country="DE",
        )
        return mint_token(platform_signing_key(self.data_root), claims, ttl=dt.timedelta(minutes=30))


@pytest.fixture(scope="session")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcessPlatform]:
    data_root = tmp_path_factory.mktemp("platform")
    ports = {service: free_port() for service in SERVICES}
    targets = {service: f"127.0.0.1:{port}" for service, port in ports.items()}
    running: dict[str, RunningService] = {}
    try:
        for service in SERVICES:
            build = importlib.import_module(f"services.{service}.server").build
            running[service] = await start_service(
                service, build, port=ports[service], data_root=data_root, targets=targets
            )
        yield InProcessPlatform(data_root, running)
    finally:
        for service in running.values():
            await service.stop(grace=1)

"""The whole platform in this test process: six real servers on loopback ports.

Started once per test session; each server has its own tracer provider, store and
clients, exactly as under `limelight up`, and the servers call each other over gRPC.
Each binds port 0 and reports the port it got.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.config import SERVICES
from libs.kit.server import Builder, RunningService, start_service
from libs.storage.testing import ENGINES, database_setting, postgres_server  # noqa: F401
from services.affiliate.server import build as build_affiliate
from services.compliance.server import build as build_compliance
from services.gifts.server import build as build_gifts
from services.ingest.server import build as build_ingest
from services.ranking.server import build as build_ranking
from services.shop.server import build as build_shop

# A service's clients take the targets known when it starts (gifts and ingest open their
# compliance channel then), so the services others call start first: compliance and
# ranking call no one.
START_ORDER: dict[str, Builder] = {
    "compliance": build_compliance,
    "ranking": build_ranking,
    "affiliate": build_affiliate,
    "gifts": build_gifts,
    "shop": build_shop,  # calls gifts (LIVE sessions), compliance and affiliate
    "ingest": build_ingest,
}


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


@pytest.fixture(scope="session", params=ENGINES)
async def platform(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcessPlatform]:
    """The six services, once with every store on SQLite files and once on PostgreSQL: every
    cross-service test runs on both engines."""
    data_root = tmp_path_factory.mktemp(f"platform-{request.param}")
    assert set(START_ORDER) == set(SERVICES), "a new service must be added to START_ORDER"
    database_url = request.getfixturevalue("postgres_server").fresh_database() if request.param == "postgres" else ""
    targets: dict[str, str] = {}
    running: dict[str, RunningService] = {}
    try:
        # Stores are opened as a service starts, so the setting is needed only meanwhile; tests
        # that run while this platform is up keep their own engine.
        with database_setting(database_url):
            for service, build in START_ORDER.items():
                running[service] = await start_service(
                    service, build, port=0, data_root=data_root, targets=dict(targets)
                )
                targets[service] = running[service].target
        yield InProcessPlatform(data_root, running)
    finally:
        for started in running.values():
            await started.stop(grace=1)

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, package_definition, start_service
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from services.compliance.data_map import DATA_MAP
from services.compliance.privacy import servicer
from services.compliance.privacy.config import PrivacyConfig


@pytest.fixture
async def privacy_server(
    tmp_path: Path, database_engine: str,  # noqa: F811 (the imported fixture)
) -> AsyncIterator[tuple[RunningService, servicer.PrivacyArea]]:
    built: list[servicer.PrivacyArea] = []

    def build_privacy_only(runtime: ServiceRuntime) -> ServiceDefinition:
        """The compliance package with only the privacy area built, wired as the server wires it."""
        area = servicer.build(runtime, config=PrivacyConfig(key_cache_ttl=dt.timedelta(seconds=7), sources=()),
                              data_maps=[DATA_MAP])
        built.append(area)
        return package_definition("limelight.compliance.v1", dict(area.servicers), policy=area.policy,
                                  on_start=area.on_start, on_stop=area.on_stop)

    running = await start_service("compliance", build_privacy_only, port=0, data_root=tmp_path)
    yield running, built[0]
    await running.stop(grace=0)

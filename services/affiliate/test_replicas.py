"""Two affiliate replicas over one store (SQLite, and PostgreSQL): a visitor's clicks spread over
both count once per hour, and a burst spread over both is still a burst. Each replica's memory
sees only its own clicks; the store, read inside the write transaction, sees them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from limelight.affiliate.v1 import commissions_pb2

from libs.kit.server import start_service
from libs.storage.database import DATABASE_URL_ENV
from services.affiliate.config import AffiliateConfig
from services.affiliate.conftest import Affiliate, fresh, start_affiliate
from services.compliance.server import build as build_compliance

BURST_LIMIT = 5


@pytest.fixture
async def replicas(tmp_path: Path, database_engine: str,  # noqa: F811 (the imported fixture)
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Affiliate, Affiliate]]:
    with monkeypatch.context() as sqlite_only:  # compliance's own stores are not what this tests
        sqlite_only.delenv(DATABASE_URL_ENV, raising=False)
        compliance = await start_service("compliance", build_compliance, port=0, data_root=tmp_path)
    config = AffiliateConfig(burst_limit=BURST_LIMIT)
    first = await start_affiliate(tmp_path, compliance, config)
    second = await start_affiliate(tmp_path, compliance, config)
    yield first, second
    await second.stop()
    await first.stop()
    await compliance.stop(grace=0)


async def test_a_visitors_clicks_over_two_replicas_count_once(replicas: tuple[Affiliate, Affiliate]) -> None:
    first, second = replicas
    program = await first.program(fresh("m"), cpc=5, cap=1_000)
    link = await first.link(fresh("c"), program)
    buyer = fresh("u")
    await first.grant_tracking(buyer)

    clicks = await asyncio.gather(*(replica.click(link.token, user=buyer, visitor_id="visitor-0123456789abcdef")
                                    for replica in (first, second) * 6))

    assert sum(click.counted for click in clicks) == 1
    assert first.service.backend.store.counted_clicks(link.name) == 1
    creator = link.name.split("/trackingLinks/")[0]
    paid = await second.commissions.ListCommissions(commissions_pb2.ListCommissionsRequest(parent=creator),
                                                   metadata=second.officer())
    assert [c.amount_minor for c in paid.commissions] == [5]  # one click's CPC, not one per replica


async def test_a_burst_spread_over_two_replicas_is_still_a_burst(replicas: tuple[Affiliate, Affiliate]) -> None:
    first, second = replicas
    program = await first.program(fresh("m"), cpc=5, cap=1_000)
    link = await first.link(fresh("c"), program)
    for index in range(BURST_LIMIT + 3):  # each replica alone sees four: under the limit
        replica = (first, second)[index % 2]
        buyer = fresh("u")
        await replica.grant_tracking(buyer)
        assert (await replica.click(link.token, user=buyer, client_ip=f"198.51.100.{10 + index}")).counted
    creator = link.name.split("/trackingLinks/")[0]
    frozen = await first.commissions.ListCommissions(commissions_pb2.ListCommissionsRequest(
        parent=creator, state=commissions_pb2.COMMISSION_STATE_FROZEN), metadata=first.officer())
    assert [c.state_reason for c in frozen.commissions] == ["CLICK_BURST"] * 3

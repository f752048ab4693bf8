"""Fixtures for affiliate's server tests: real compliance and affiliate servers on port 0, one per module."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from limelight.affiliate.v1 import (
    commissions_pb2,
    commissions_pb2_grpc,
    links_pb2,
    links_pb2_grpc,
    programs_pb2,
    programs_pb2_grpc,
)
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from libs.timestamps import to_timestamp
from services.affiliate.config import AffiliateConfig
from services.affiliate.server import AffiliateService
from services.compliance.server import build as build_compliance

Metadata = tuple[tuple[str, str], ...]
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Version/17.4 Mobile Safari/604.1"
DATA_CENTRE = "203.0.113.0/24"
_ids = itertools.count(1)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_ids)}-{uuid.uuid4().hex[:6]}"


def unique_ip() -> str:
    """An address no other click of the module used: fraud rules count orders per address pseudonym."""
    number = next(_ids)
    return f"198.18.{number >> 8 & 255}.{number & 255}"


def request_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Affiliate:
    root: Path
    running: RunningService
    compliance: RunningService
    service: AffiliateService
    programs: programs_pb2_grpc.ProgramServiceAsyncStub
    links: links_pb2_grpc.LinkServiceAsyncStub
    commissions: commissions_pb2_grpc.CommissionServiceAsyncStub
    consent: consent_pb2_grpc.ConsentServiceAsyncStub
    channels: list[grpc.aio.Channel]

    async def stop(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.running.stop(grace=0)

    def bearer(self, subject: str, *roles: Role) -> Metadata:
        claims = TokenClaims(subject, frozenset(roles), birth_date=birth_date_for_age(30, dt.date.today()))
        return (("authorization", f"Bearer {mint_token(platform_signing_key(self.root), claims, ttl=dt.timedelta(minutes=30))}"),)

    def merchant(self, merchant: str) -> Metadata:
        return self.bearer(f"users/{merchant}", Role.MERCHANT)

    def creator(self, creator: str) -> Metadata:
        return self.bearer(f"users/{creator}", Role.CREATOR)

    def shop(self) -> Metadata:
        return self.bearer("services/shop", Role.SERVICE)

    def officer(self) -> Metadata:
        return self.bearer("users/olga", Role.COMPLIANCE_OFFICER)

    async def program(self, merchant: str, *, rate_bps: int = 1000, cpc: int = 0, cap: int = 0,
                      window: dt.timedelta = dt.timedelta(days=30), model: str = "LAST_CLICK",
                      return_window: dt.timedelta = dt.timedelta(days=14), products: tuple[str, ...] = ()) -> str:
        program = programs_pb2.Program(
            display_name="Spring", products=list(products), commission_rate_bps=rate_bps, cost_per_click_minor=cpc,
            daily_click_cap_minor=cap, currency_code="EUR", attribution_window=Duration(seconds=int(window.total_seconds())),
            attribution_model=f"ATTRIBUTION_MODEL_{model}", return_window=Duration(seconds=int(return_window.total_seconds())))
        response = await self.programs.CreateProgram(programs_pb2.CreateProgramRequest(
            parent=f"merchants/{merchant}", program=program), metadata=self.merchant(merchant))
        return response.program.name

    async def link(self, creator: str, program: str, product: str = "") -> links_pb2.TrackingLink:
        response = await self.links.CreateTrackingLink(links_pb2.CreateTrackingLinkRequest(
            parent=f"creators/{creator}", program=program, product=product), metadata=self.creator(creator))
        return response.tracking_link

    async def grant_tracking(self, user: str) -> None:
        request = consent_pb2.RecordConsentRequest(
            parent=f"users/{user}", request_id=request_id(), purpose=consent_pb2.CONSENT_PURPOSE_AFFILIATE_TRACKING,
            decision=consent_pb2.CONSENT_DECISION_GRANTED, notice_version="v1",
            method=consent_pb2.CONSENT_METHOD_SETTINGS_TOGGLE, source="test")
        request.decision_time.FromDatetime(now() - dt.timedelta(seconds=5))
        await self.consent.RecordConsent(request, metadata=self.bearer(f"users/{user}", Role.VIEWER))

    async def click(self, token: str, *, user: str = "", visitor_id: str = "", at: dt.datetime | None = None,
                    user_agent: str = BROWSER, client_ip: str = "", purpose: str = "",
                    rid: str | None = None) -> links_pb2.Click:
        response = await self.links.RecordClick(links_pb2.RecordClickRequest(
            request_id=rid or request_id(), token=token, visitor_id=visitor_id, user=f"users/{user}" if user else "",
            user_agent=user_agent, client_ip=client_ip or unique_ip(), country_code="DE", purpose_header=purpose,
            click_time=to_timestamp(at or now())), metadata=self.shop())
        return response.click

    async def order(self, buyer: str, merchant: str, visitor_id: str, lines: list[tuple[str, int]], *,
                    at: dt.datetime | None = None, order_id: str | None = None,
                    rid: str | None = None) -> commissions_pb2.AttributeOrderResponse:
        return await self.commissions.AttributeOrder(commissions_pb2.AttributeOrderRequest(
            request_id=rid or request_id(), order=f"users/{buyer}/orders/{order_id or fresh('o')}",
            merchant=f"merchants/{merchant}", visitor_id=visitor_id, currency_code="EUR",
            lines=[commissions_pb2.AttributedLine(product=f"merchants/{merchant}/products/{product}", paid_minor=paid)
                   for product, paid in lines],
            order_time=to_timestamp(at or now())), metadata=self.shop())

    async def order_event(self, order: str, kind: str, *, refunded: int = 0, at: dt.datetime | None = None,
                          rid: str | None = None) -> commissions_pb2.RecordOrderEventResponse:
        return await self.commissions.RecordOrderEvent(commissions_pb2.RecordOrderEventRequest(
            request_id=rid or request_id(), order=order, type=f"ORDER_EVENT_TYPE_{kind}", refunded_paid_minor=refunded,
            event_time=to_timestamp(at or now())), metadata=self.shop())

    async def settle(self) -> commissions_pb2.SettleCommissionsResponse:
        return await self.commissions.SettleCommissions(commissions_pb2.SettleCommissionsRequest(
            request_id=request_id(), settle_before_time=to_timestamp(now() - dt.timedelta(seconds=1))),
            metadata=self.bearer("users/ops", Role.ADMIN))

    async def commission(self, name: str) -> commissions_pb2.Commission:
        response = await self.commissions.GetCommission(commissions_pb2.GetCommissionRequest(name=name),
                                                        metadata=self.officer())
        return response.commission


@pytest.fixture(scope="module")
def affiliate_config() -> AffiliateConfig:
    """The servers' settings; a test module overrides this fixture to change them."""
    return AffiliateConfig(data_centre_ranges=(DATA_CENTRE,), burst_limit=5)


async def start_affiliate(root: Path, compliance: RunningService, config: AffiliateConfig) -> Affiliate:
    """An affiliate server on `root` beside a running compliance, and stubs to both (close with `stop`)."""
    holder: list[AffiliateService] = []

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        holder.append(AffiliateService(runtime, config=config))
        return holder[0].definition()

    running = await start_service("affiliate", build, port=0, data_root=root, targets={"compliance": compliance.target})
    channel = grpc.aio.insecure_channel(running.target)
    compliance_channel = grpc.aio.insecure_channel(compliance.target)
    return Affiliate(root, running, compliance, holder[0], programs_pb2_grpc.ProgramServiceStub(channel),
                     links_pb2_grpc.LinkServiceStub(channel), commissions_pb2_grpc.CommissionServiceStub(channel),
                     consent_pb2_grpc.ConsentServiceStub(compliance_channel), [channel, compliance_channel])


@pytest.fixture(scope="module")
async def affiliate(tmp_path_factory: pytest.TempPathFactory, affiliate_config: AffiliateConfig) -> AsyncIterator[Affiliate]:
    root = tmp_path_factory.mktemp("affiliate")
    compliance = await start_service("compliance", build_compliance, port=0, data_root=root)
    started = await start_affiliate(root, compliance, affiliate_config)
    yield started
    await started.stop()
    await compliance.stop(grace=0)

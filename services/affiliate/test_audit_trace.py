"""Every commission change and every refusal is an audit event, in the trace of the call that caused it."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import pytest
from limelight.affiliate.v1 import commissions_pb2, links_pb2

from libs.kit.telemetry import read_spans
from libs.timestamps import to_timestamp
from services.affiliate.config import AffiliateConfig
from services.affiliate.conftest import DATA_CENTRE, Affiliate, Metadata, fresh, now, request_id


@pytest.fixture(scope="module")
def affiliate_config() -> AffiliateConfig:
    """Events stay in the outbox, where the test reads them (shipping is libs/audit's, tested there)."""
    return AffiliateConfig(data_centre_ranges=(DATA_CENTRE,), ship_audit=False)


def _traced(metadata: Metadata, trace_id: str) -> Metadata:
    return (*metadata, ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"))


async def test_click_and_commission_paths_are_audited_in_the_shop_orders_trace(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, cpc=10, cap=100)
    link = await affiliate.link(fresh("c"), program)
    buyer = fresh("u")
    await affiliate.grant_tracking(buyer)
    click_trace, order_trace = secrets.token_hex(16), secrets.token_hex(16)
    click = (await affiliate.links.RecordClick(links_pb2.RecordClickRequest(
        request_id=request_id(), token=link.token, user=f"users/{buyer}", user_agent="Mozilla/5.0 (X11) Firefox/126",
        client_ip="198.51.100.77", click_time=to_timestamp(now())),
        metadata=_traced(affiliate.shop(), click_trace))).click
    order = f"users/{buyer}/orders/{fresh('o')}"
    await affiliate.commissions.AttributeOrder(commissions_pb2.AttributeOrderRequest(
        request_id=request_id(), order=order, merchant=f"merchants/{merchant}", visitor_id=click.visitor_id,
        currency_code="EUR", lines=[commissions_pb2.AttributedLine(product=f"merchants/{merchant}/products/a",
                                                                    paid_minor=900)],
        order_time=to_timestamp(now())), metadata=_traced(affiliate.shop(), order_trace))
    await affiliate.commissions.RecordOrderEvent(commissions_pb2.RecordOrderEventRequest(
        request_id=request_id(), order=order, type=commissions_pb2.ORDER_EVENT_TYPE_REFUNDED, refunded_paid_minor=300,
        event_time=to_timestamp(now())), metadata=_traced(affiliate.shop(), order_trace))
    with pytest.raises(grpc.aio.AioRpcError):
        await affiliate.links.RecordClick(links_pb2.RecordClickRequest(
            request_id=request_id(), token=link.token[:-4] + "AAAA", user_agent="Mozilla/5.0",
            click_time=to_timestamp(now())), metadata=_traced(affiliate.shop(), click_trace))

    denied_trace = secrets.token_hex(16)
    for metadata in (affiliate.creator("mallory"), ()):  # a missing role (the kit), no token at all
        with pytest.raises(grpc.aio.AioRpcError):
            await affiliate.commissions.FreezeCommission(commissions_pb2.FreezeCommissionRequest(
                request_id=request_id(), name="creators/ada/commissions/x", reason="X"),
                metadata=_traced(metadata, denied_trace))
    with pytest.raises(grpc.aio.AioRpcError):  # the handler's own ownership check
        await affiliate.commissions.GetEarnings(commissions_pb2.GetEarningsRequest(parent="creators/ada"),
                                                metadata=_traced(affiliate.creator("mallory"), denied_trace))

    events = [t.event for t in await asyncio.to_thread(affiliate.service.backend.store.audit_outbox.pending, 10_000)]
    denials = sorted((e.action, str(e.outcome), e.reason) for e in events
                     if e.trace_id == denied_trace or (e.action == "affiliate.FreezeCommission" and not e.actor))
    assert ("affiliate.FreezeCommission", "denied", "ROLE_REQUIRED") in denials
    assert ("affiliate.GetEarnings", "denied", "NOT_RESOURCE_OWNER") in denials
    assert any(reason.startswith("TOKEN") for action, _, reason in denials if action == "affiliate.FreezeCommission")
    mine = [e for e in events if e.trace_id in (click_trace, order_trace)]
    by_action = {(e.action, e.trace_id, str(e.outcome), e.reason) for e in mine}
    assert ("affiliate.RecordClick", click_trace, "succeeded", "CLICK_COUNTED") in by_action  # the CPC commission
    assert ("affiliate.RecordClick", click_trace, "rejected", "TOKEN_INVALID") in by_action  # the refusal
    assert ("affiliate.AttributeOrder", order_trace, "succeeded", "ATTRIBUTED") in by_action
    assert any(a == "affiliate.RecordOrderEvent" and t == order_trace for a, t, _, _ in by_action)
    assert all("198.51.100.77" not in str(e.attributes) for e in events), "no address reaches the audit trail"
    await asyncio.to_thread(affiliate.running.runtime.telemetry.provider.force_flush)
    spans = read_spans(affiliate.root)
    assert {s.get("trace_id") for s in spans if str(s.get("name", "")).endswith("AttributeOrder")} >= {order_trace}

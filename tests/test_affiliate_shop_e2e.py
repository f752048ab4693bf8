"""A creator's link, end to end with the real shop: click, Checkout, capture, fulfilment, settlement
after the return window, and a refund after settlement that claws back.

Real servers on loopback: compliance (consent, data keys, audit log), affiliate and the shop, whose
delivery outbox brings AttributeOrder and RecordOrderEvent to affiliate. The shop runs on a clock
three weeks back, so the return window (14 days) has passed by the time the settlement runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from limelight.affiliate.v1 import commissions_pb2
from limelight.shop.v1 import orders_pb2

from libs.auth.principal import Role
from libs.kit.server import start_service
from libs.kit.telemetry import read_spans
from libs.timestamps import to_timestamp
from services.affiliate.config import AffiliateConfig
from services.affiliate.conftest import Affiliate, now, start_affiliate
from services.compliance.server import build as build_compliance
from services.shop.config import ShopConfig
from services.shop.conftest import MovableClock, Shop, start_shop

T = TypeVar("T")
STATES = commissions_pb2.CommissionState


async def eventually(read: Callable[[], Awaitable[T]], holds: Callable[[T], bool], *, seconds: float = 10.0) -> T:
    """`read()` until `holds` (the shop delivers from its outbox, asynchronously), or fail at the deadline."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await read()
        if holds(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"never held; last {value}"
        await asyncio.sleep(0.05)


async def _sales(affiliate: Affiliate, creator: str) -> list[commissions_pb2.Commission]:
    listed = await affiliate.commissions.ListCommissions(commissions_pb2.ListCommissionsRequest(
        parent=f"creators/{creator}"), metadata=affiliate.creator(creator))
    return sorted(listed.commissions, key=lambda c: c.amount_minor, reverse=True)


async def test_click_checkout_capture_fulfil_settle_and_a_refund_that_claws_back(tmp_path: Path) -> None:
    compliance = await start_service("compliance", build_compliance, port=0, data_root=tmp_path)
    affiliate = await start_affiliate(tmp_path, compliance, AffiliateConfig())
    clock = MovableClock(now() - dt.timedelta(days=21))
    shop: Shop = await start_shop(tmp_path, clock=clock, config=ShopConfig(ship_audit=False),
                                  targets={"compliance": compliance.target, "affiliate": affiliate.running.target})
    order_trace = secrets.token_hex(16)
    try:
        merchant, creator, buyer = "shoes", "ada", "bob"
        product = await shop.product("runner", price=12_000, stock=5, merchant=merchant)
        program = await affiliate.program(merchant, rate_bps=1_000, return_window=dt.timedelta(days=14))
        link = await affiliate.link(creator, program, product.name)
        await affiliate.grant_tracking(buyer)
        click = await affiliate.click(link.token, user=buyer, at=clock() - dt.timedelta(hours=2))
        assert click.counted

        checkout = shop.checkout_request(buyer, product.name, 2, total=24_000, affiliate_visitor_id=click.visitor_id)
        traced = (*shop.auth(f"users/{buyer}"), ("traceparent", f"00-{order_trace}-{secrets.token_hex(8)}-01"))
        order = (await shop.orders.Checkout(checkout, metadata=traced)).order
        await shop.orders.CaptureOrder(orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()), name=order.name),
                                       metadata=shop.auth(f"users/{buyer}"))
        [pending] = await eventually(lambda: _sales(affiliate, creator), lambda sales: len(sales) == 1)
        paid_net = sum(line.total_minor - line.tax_minor for line in order.lines)  # after discounts, before VAT
        assert (pending.order, pending.base_amount_minor, pending.amount_minor) == \
            (order.name, paid_net, paid_net * 1_000 // 10_000)
        assert pending.state == STATES.Value("COMMISSION_STATE_PENDING") and not pending.HasField("settle_after_time")

        await shop.orders.FulfillOrder(orders_pb2.FulfillOrderRequest(
            request_id=str(uuid.uuid4()), name=order.name, fulfillment=orders_pb2.Fulfillment(carrier="DHL")),
            metadata=shop.merchant(merchant))
        await eventually(lambda: _sales(affiliate, creator), lambda sales: sales[0].HasField("settle_after_time"))
        settled = await affiliate.commissions.SettleCommissions(commissions_pb2.SettleCommissionsRequest(
            request_id=str(uuid.uuid4()), settle_before_time=to_timestamp(now() - dt.timedelta(seconds=1))),
            metadata=affiliate.bearer("services/scheduler", Role.SERVICE))
        assert settled.settled_count >= 1
        [done] = await _sales(affiliate, creator)
        assert done.state == STATES.Value("COMMISSION_STATE_SETTLED")

        clock.advance(dt.timedelta(days=1))  # a return after settlement
        await shop.orders.RefundOrder(orders_pb2.RefundOrderRequest(
            request_id=str(uuid.uuid4()), name=order.name, reason="one pair returned",
            items=[orders_pb2.CheckoutItem(product=product.name, quantity=1)]), metadata=shop.merchant(merchant))
        sales = await eventually(lambda: _sales(affiliate, creator), lambda sales: len(sales) == 2)
        original, clawback = sales
        assert clawback.clawback_of == original.name and clawback.amount_minor == -(original.amount_minor // 2)
        earnings = await affiliate.commissions.GetEarnings(commissions_pb2.GetEarningsRequest(
            parent=f"creators/{creator}"), metadata=affiliate.creator(creator))
        assert [(t.state, t.amount_minor) for t in earnings.totals] == \
            [(STATES.Value("COMMISSION_STATE_SETTLED"), original.amount_minor + clawback.amount_minor)]
    finally:
        await shop.close()
        await affiliate.stop()
        await compliance.stop(grace=0)
    # The shop's delivery continues the checkout's trace, so the commission is in the order's trace
    # (read once the services stopped and flushed their spans).
    in_order_trace = {(span["service"], span["name"]) for span in read_spans(tmp_path) if span["trace_id"] == order_trace}
    assert {("limelight-shop", "/limelight.shop.v1.OrderService/Checkout"),
            ("limelight-affiliate", "/limelight.affiliate.v1.CommissionService/AttributeOrder")} <= in_order_trace

"""Order events for affiliate leave through the delivery outbox: written with the transition,
valid against affiliate's contract, retried while affiliate cannot take them, and never in the
way of a checkout."""

from __future__ import annotations

import datetime as dt
import uuid

from limelight.shop.v1 import orders_pb2

from libs.kit.validation import violations_of
from services.shop.affiliate import ATTRIBUTE_ORDER, ORDER_EVENT, attribute_order_request, order_event_request
from services.shop.conftest import Shop

VISITOR = "visitor-0123456789abcdef"


def _deliveries(shop: Shop) -> list[tuple[str, int]]:
    return [(str(kind), int(str(attempts))) for kind, attempts in shop.query("SELECT kind, attempts FROM deliveries ORDER BY id")]


async def test_order_events_wait_in_the_outbox_while_affiliate_is_away_and_match_its_contract(shop: Shop) -> None:
    product = await shop.product("earbuds", price=11_900, stock=5)
    order = (await shop.orders.Checkout(shop.checkout_request("ada", product.name, 2, total=23_800,
                                                              affiliate_visitor_id=VISITOR),
                                        metadata=shop.auth("users/ada"))).order
    assert order.state == orders_pb2.ORDER_STATE_RESERVED  # affiliate is down; the checkout is not held up
    await shop.orders.CaptureOrder(orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()), name=order.name),
                                   metadata=shop.auth("users/ada"))
    await shop.orders.RefundOrder(orders_pb2.RefundOrderRequest(
        request_id=str(uuid.uuid4()), name=order.name, reason="returned",
        items=[orders_pb2.CheckoutItem(product=product.name, quantity=1)]), metadata=shop.merchant())

    pending = shop.service.store.due_deliveries(shop.clock() + dt.timedelta(hours=1), 10)
    kinds = [delivery.kind for delivery in pending]
    assert kinds == [ATTRIBUTE_ORDER, ORDER_EVENT]
    attribution = attribute_order_request(pending[0].payload)
    refund = order_event_request(pending[1].payload)
    assert violations_of(attribution) == [] and violations_of(refund) == []
    assert attribution.order == order.name and attribution.visitor_id == VISITOR
    assert [(line.product, line.paid_minor) for line in attribution.lines] == [(product.name, 20_000)]  # before VAT
    assert refund.refunded_paid_minor == 10_000
    assert order_event_request(pending[1].payload).request_id == refund.request_id  # a resend is the same event

    shop.clock.advance(dt.timedelta(hours=1))  # past any backoff: every entry is due again
    assert await shop.service.shipper.ship_due() == 0
    kept = _deliveries(shop)
    assert [kind for kind, _ in kept] == kinds and all(attempts >= 1 for _, attempts in kept)

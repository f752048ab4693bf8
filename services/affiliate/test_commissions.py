"""Attribution and the commission lifecycle against the real servers."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from limelight.affiliate.v1 import commissions_pb2, links_pb2

from libs.kit.testing import error_info
from libs.timestamps import to_timestamp
from services.affiliate.conftest import Affiliate, fresh, now, request_id

DAY = dt.timedelta(days=1)


async def _clicked(affiliate: Affiliate, merchant: str, program: str, *, at: dt.datetime, visitor_id: str = "",
                   buyer: str = "", creator: str = "") -> tuple[links_pb2.TrackingLink, links_pb2.Click, str]:
    link = await affiliate.link(creator or fresh("c"), program)
    buyer = buyer or fresh("u")
    await affiliate.grant_tracking(buyer)
    click = await affiliate.click(link.token, user=buyer, visitor_id=visitor_id, at=at)
    assert click.counted, links_pb2.ClickFilterReason.Name(click.filter_reason)
    return link, click, buyer


def _reason(response: commissions_pb2.AttributeOrderResponse) -> str:
    return commissions_pb2.NonAttributionReason.Name(response.non_attribution_reason)


def _state(commission: commissions_pb2.Commission) -> str:
    return commissions_pb2.CommissionState.Name(commission.state).removeprefix("COMMISSION_STATE_")


async def test_cps_is_the_rate_on_the_price_paid_and_a_link_rate_beats_the_programme(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, rate_bps=1000)
    link, click, buyer = await _clicked(affiliate, merchant, program, at=now() - DAY)
    # 2 lines paid 1999 + 3001 after discounts (before VAT): 10 % of 5000
    response = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1999), ("sock", 3001)])
    assert response.attributed and response.commission.amount_minor == 500
    assert (response.commission.base_amount_minor, response.commission.rate_bps, _state(response.commission)) == \
        (5000, 1000, "PENDING")
    await affiliate.links.SetLinkCommissionRate(links_pb2.SetLinkCommissionRateRequest(
        name=link.name, commission_rate_bps=1500), metadata=affiliate.merchant(merchant))
    second = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)])
    assert (second.commission.rate_bps, second.commission.amount_minor) == (1500, 150)


async def test_only_products_in_the_programme_earn(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, products=(f"merchants/{merchant}/products/shoe",))
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - DAY)
    mixed = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 2000), ("hat", 5000)])
    assert mixed.commission.base_amount_minor == 2000 and mixed.commission.amount_minor == 200
    other = await affiliate.order(buyer, merchant, click.visitor_id, [("hat", 5000)])
    assert (other.attributed, _reason(other)) == (False, "NON_ATTRIBUTION_REASON_PRODUCTS_NOT_IN_PROGRAM")


async def test_the_attribution_window_decides(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, window=dt.timedelta(days=2))
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - 3 * DAY)
    late = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)])
    assert (late.attributed, _reason(late)) == (False, "NON_ATTRIBUTION_REASON_NO_CLICK_IN_WINDOW")
    inside = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)], at=now() - 2 * DAY)
    assert inside.attributed
    none = await affiliate.order(buyer, merchant, "", [("shoe", 1000)])
    assert _reason(none) == "NON_ATTRIBUTION_REASON_NO_VISITOR"


@pytest.mark.parametrize("model", ["LAST_CLICK", "FIRST_CLICK"])
async def test_last_or_first_click_gets_the_credit(affiliate: Affiliate, model: str) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, model=model)
    first_link, first, buyer = await _clicked(affiliate, merchant, program, at=now() - 5 * DAY)
    second_link, _, _ = await _clicked(affiliate, merchant, program, at=now() - DAY, visitor_id=first.visitor_id,
                                       buyer=buyer)
    response = await affiliate.order(buyer, merchant, first.visitor_id, [("shoe", 1000)])
    expected = second_link if model == "LAST_CLICK" else first_link
    assert response.commission.tracking_link == expected.name


async def test_a_creator_buying_through_their_own_link_earns_nothing(affiliate: Affiliate) -> None:
    merchant, creator = fresh("m"), fresh("c")
    program = await affiliate.program(merchant)
    # the creator clicked signed out (no self-click detection possible), then bought signed in
    link = await affiliate.link(creator, program)
    await affiliate.grant_tracking(fresh("u"))
    friend = fresh("u")
    await affiliate.grant_tracking(friend)
    click = await affiliate.click(link.token, user=friend)
    response = await affiliate.order(creator, merchant, click.visitor_id, [("shoe", 1000)])
    assert (response.attributed, _reason(response)) == (False, "NON_ATTRIBUTION_REASON_SELF_PURCHASE")


async def test_a_duplicate_order_returns_the_first_answer_and_never_pays_twice(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant)
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - DAY)
    order_id = fresh("o")
    first = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)], order_id=order_id)
    again = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)], order_id=order_id)
    assert again.duplicate_order and not first.duplicate_order
    assert again.commission.name == first.commission.name
    rid = request_id()
    await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 7)], rid=rid)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 8)], rid=rid)
    assert (refused.value.code(), error_info(refused.value).reason) == \
        (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


async def test_pending_settles_after_the_return_window_and_cancel_makes_it_ineligible(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, return_window=dt.timedelta(days=14))
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - 30 * DAY)
    early = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)], at=now() - 29 * DAY)
    recent = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)], at=now() - 29 * DAY)
    cancelled = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)], at=now() - 29 * DAY)
    await affiliate.order_event(early.commission.order, "FULFILLED", at=now() - 20 * DAY)
    await affiliate.order_event(recent.commission.order, "FULFILLED", at=now() - 3 * DAY)
    gone = await affiliate.order_event(cancelled.commission.order, "CANCELLED")
    assert (_state(gone.commission), gone.commission.state_reason, gone.commission.amount_minor) == \
        ("INELIGIBLE", "ORDER_CANCELLED", 0)
    await affiliate.settle()
    assert _state(await affiliate.commission(early.commission.name)) == "SETTLED"
    assert _state(await affiliate.commission(recent.commission.name)) == "PENDING"


async def test_partial_refunds_reduce_cps_pro_rata_and_a_full_refund_makes_it_ineligible(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, rate_bps=1000)
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - DAY)
    order = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 6000), ("sock", 4000)])
    quarter = await affiliate.order_event(order.commission.order, "REFUNDED", refunded=2500)
    assert (quarter.commission.base_amount_minor, quarter.commission.amount_minor) == (7500, 750)
    rest = await affiliate.order_event(order.commission.order, "REFUNDED", refunded=7500)
    assert (_state(rest.commission), rest.commission.amount_minor) == ("INELIGIBLE", 0)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await affiliate.order_event(order.commission.order, "REFUNDED", refunded=1)
    assert error_info(refused.value).reason == "REFUND_EXCEEDS_ORDER"


async def test_a_refund_after_settlement_claws_back_as_a_negative_commission(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, rate_bps=1000, return_window=dt.timedelta(days=1))
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - 10 * DAY)
    order = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 10000)], at=now() - 9 * DAY)
    await affiliate.order_event(order.commission.order, "FULFILLED", at=now() - 8 * DAY)
    await affiliate.settle()
    rid = request_id()
    refund = await affiliate.order_event(order.commission.order, "REFUNDED", refunded=4000, rid=rid)
    assert _state(refund.commission) == "SETTLED" and refund.commission.amount_minor == 1000
    assert (refund.clawback.amount_minor, refund.clawback.clawback_of, _state(refund.clawback)) == \
        (-400, order.commission.name, "SETTLED")
    replay = await affiliate.order_event(order.commission.order, "REFUNDED", refunded=4000, rid=rid)
    assert replay.clawback.name == refund.clawback.name
    creator = order.commission.name.split("/commissions/")[0]
    earnings = await affiliate.commissions.GetEarnings(commissions_pb2.GetEarningsRequest(parent=creator),
                                                       metadata=affiliate.officer())
    assert [(t.state, t.amount_minor) for t in earnings.totals] == [(commissions_pb2.COMMISSION_STATE_SETTLED, 600)]
    before_the_order = await affiliate.commissions.GetEarnings(commissions_pb2.GetEarningsRequest(
        parent=creator, end_time=to_timestamp(now() - 9 * DAY - dt.timedelta(hours=1))), metadata=affiliate.officer())
    assert list(before_the_order.totals) == []
    the_order_only = await affiliate.commissions.GetEarnings(commissions_pb2.GetEarningsRequest(
        parent=creator, start_time=to_timestamp(now() - 10 * DAY), end_time=to_timestamp(now() - 8 * DAY)),
        metadata=affiliate.officer())
    assert [t.amount_minor for t in the_order_only.totals] == [1000], "the period counts by creation time"
    paid = await affiliate.commissions.PayOutCommissions(commissions_pb2.PayOutCommissionsRequest(
        request_id=request_id(), parent=creator), metadata=affiliate.creator(creator.removeprefix("creators/")))
    assert [(p.amount_minor, p.commission_count) for p in paid.payouts] == [(600, 2)]
    after_pay = await affiliate.order_event(order.commission.order, "REFUNDED", refunded=6000)
    assert after_pay.clawback.amount_minor == -600


async def test_fraud_freezes_and_an_officer_unfreezes(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant)
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - DAY)
    order = await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)])
    name = order.commission.name
    frozen = await affiliate.commissions.FreezeCommission(commissions_pb2.FreezeCommissionRequest(
        request_id=request_id(), name=name, reason="CLICK_FRAUD_SUSPECTED"), metadata=affiliate.officer())
    assert (_state(frozen.commission), frozen.commission.state_reason) == ("FROZEN", "CLICK_FRAUD_SUSPECTED")
    await affiliate.order_event(order.commission.order, "FULFILLED", at=now() - 20 * DAY)
    await affiliate.settle()
    assert _state(await affiliate.commission(name)) == "FROZEN", "a frozen commission does not settle"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await affiliate.commissions.UnfreezeCommission(commissions_pb2.UnfreezeCommissionRequest(
            request_id=request_id(), name=name), metadata=affiliate.creator(name.split("/")[1]))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    thawed = await affiliate.commissions.UnfreezeCommission(commissions_pb2.UnfreezeCommissionRequest(
        request_id=request_id(), name=name), metadata=affiliate.officer())
    assert _state(thawed.commission) == "PENDING"
    await affiliate.settle()
    assert _state(await affiliate.commission(name)) == "SETTLED"


async def test_many_orders_from_one_visitor_pseudonym_freeze_with_the_reason(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant)
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - DAY)
    states = [(_state(r.commission), r.commission.state_reason) for r in
              [await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)]) for _ in range(4)]]
    assert states[:3] == [("PENDING", "ORDER_ATTRIBUTED")] * 3
    assert states[3] == ("FROZEN", "MANY_ORDERS_FROM_ONE_VISITOR")


async def test_a_click_burst_freezes_what_the_link_earns(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant, cpc=5, cap=1000)
    link = await affiliate.link(fresh("c"), program)
    clicks = []
    for index in range(7):  # the fixture's burst limit is 5 per minute
        buyer = fresh("u")
        await affiliate.grant_tracking(buyer)
        clicks.append(await affiliate.click(link.token, user=buyer, client_ip=f"198.51.100.{100 + index}"))
    creator = link.name.split("/trackingLinks/")[0]
    listed = await affiliate.commissions.ListCommissions(commissions_pb2.ListCommissionsRequest(
        parent=creator, state=commissions_pb2.COMMISSION_STATE_FROZEN), metadata=affiliate.officer())
    assert {c.state_reason for c in listed.commissions} == {"CLICK_BURST"} and len(listed.commissions) == 2


async def test_an_event_for_an_order_not_reported_yet_is_refused_so_the_shop_sends_it_again(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant)
    _, click, buyer = await _clicked(affiliate, merchant, program, at=now() - DAY)
    order_id, rid = fresh("o"), request_id()
    order = f"users/{buyer}/orders/{order_id}"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await affiliate.order_event(order, "FULFILLED", rid=rid)
    assert error_info(refused.value).reason == "ORDER_NOT_REPORTED"
    await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 1000)], order_id=order_id)
    again = await affiliate.order_event(order, "FULFILLED", rid=rid)
    assert again.commission.HasField("settle_after_time")

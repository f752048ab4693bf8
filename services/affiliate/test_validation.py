"""Every malformed input is INVALID_ARGUMENT with a BadRequest naming the field (attack cases as data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from limelight.affiliate.v1 import commissions_pb2, links_pb2, programs_pb2

from libs.kit.testing import status_detail
from libs.timestamps import to_timestamp
from services.affiliate.conftest import Affiliate, now

RID = "5d1c2b8e-6f4a-4e2b-9c3d-1a2b3c4d5e6f"


def _program(**changes: Any) -> programs_pb2.Program:
    fields: dict[str, Any] = dict(display_name="P", commission_rate_bps=500, currency_code="EUR",
                                  attribution_window=Duration(seconds=86400 * 7),
                                  attribution_model=programs_pb2.ATTRIBUTION_MODEL_LAST_CLICK,
                                  return_window=Duration(seconds=86400))
    fields.update(changes)
    return programs_pb2.Program(**fields)


def _order(**changes: Any) -> commissions_pb2.AttributeOrderRequest:
    fields: dict[str, Any] = dict(request_id=RID, order="users/u/orders/o", merchant="merchants/m",
                                  visitor_id="v" * 20, currency_code="EUR", order_time=to_timestamp(now()),
                                  lines=[commissions_pb2.AttributedLine(product="merchants/m/products/p", paid_minor=1)])
    fields.update(changes)
    return commissions_pb2.AttributeOrderRequest(**fields)


def _click(**changes: Any) -> links_pb2.RecordClickRequest:
    fields: dict[str, Any] = dict(request_id=RID, token="v1.k1.abcdefgh.ijklmnop", click_time=to_timestamp(now()))
    fields.update(changes)
    return links_pb2.RecordClickRequest(**fields)


# (stub, method, who calls, request, the field named)
CASES: list[tuple[str, str, str, Callable[[], Message], str]] = [
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="Merchants/X", program=_program()), "parent"),
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="merchants/mv", program=_program(attribution_window=Duration(seconds=3600))), "program.attribution_window"),
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="merchants/mv", program=_program(attribution_window=Duration(seconds=86400 * 91))),
     "program.attribution_window"),
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="merchants/mv", program=_program(commission_rate_bps=10001)), "program.commission_rate_bps"),
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="merchants/mv", program=_program(currency_code="eur")), "program.currency_code"),
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="merchants/mv", program=_program(attribution_model=0)), "program.attribution_model"),
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="merchants/mv", program=_program(products=["merchants/other/products/p"])), "program.products[0]"),
    ("programs", "CreateProgram", "merchant", lambda: programs_pb2.CreateProgramRequest(
        parent="merchants/mv", program=_program(cost_per_click_minor=5)), "program.daily_click_cap_minor"),
    ("programs", "GetProgram", "merchant", lambda: programs_pb2.GetProgramRequest(name="merchants/m"), "name"),
    ("programs", "ListPrograms", "merchant", lambda: programs_pb2.ListProgramsRequest(
        parent="merchants/-", page_token="garbage"), "page_token"),
    ("links", "CreateTrackingLink", "creator", lambda: links_pb2.CreateTrackingLinkRequest(
        parent="creators/cv", program="programs/p"), "program"),
    ("links", "GetTrackingLink", "creator", lambda: links_pb2.GetTrackingLinkRequest(name="creators/cv/links/x"), "name"),
    ("links", "SetLinkCommissionRate", "merchant", lambda: links_pb2.SetLinkCommissionRateRequest(
        name="creators/c/trackingLinks/l", commission_rate_bps=10001), "commission_rate_bps"),
    ("links", "RecordClick", "shop", lambda: _click(request_id="nope"), "request_id"),
    ("links", "RecordClick", "shop", lambda: _click(token="short"), "token"),
    ("links", "RecordClick", "shop", lambda: _click(token="v1.k1.abcdefgh.ijklmnop"), "token"),
    ("links", "RecordClick", "shop", lambda: _click(client_ip="999.1.1.1"), "client_ip"),
    ("links", "RecordClick", "shop", lambda: _click(country_code="Germany"), "country_code"),
    ("links", "RecordClick", "shop", lambda: _click(user="ada"), "user"),
    ("links", "RecordClick", "shop", lambda: links_pb2.RecordClickRequest(request_id=RID, token="v1.k1.abcdefgh.ijkl"),
     "click_time"),
    ("links", "ReviewLinkDisclosure", "creator", lambda: links_pb2.ReviewLinkDisclosureRequest(
        tracking_link="creators/cv/trackingLinks/l", content="creators/cv/videos/v"), "brand_name"),
    ("commissions", "AttributeOrder", "shop", lambda: _order(order="orders/o"), "order"),
    ("commissions", "AttributeOrder", "shop", lambda: _order(lines=[]), "lines"),
    ("commissions", "AttributeOrder", "shop", lambda: _order(lines=[commissions_pb2.AttributedLine(
        product="merchants/m/products/p", paid_minor=-1)]), "lines[0].paid_minor"),
    ("commissions", "AttributeOrder", "shop", lambda: _order(lines=[commissions_pb2.AttributedLine(
        product="merchants/other/products/p", paid_minor=1)]), "lines[0].product"),
    ("commissions", "AttributeOrder", "shop", lambda: _order(visitor_id="short"), "visitor_id"),
    ("commissions", "AttributeOrder", "shop", lambda: _order(currency_code="€"), "currency_code"),
    ("commissions", "RecordOrderEvent", "shop", lambda: commissions_pb2.RecordOrderEventRequest(
        request_id=RID, order="users/u/orders/o", type=commissions_pb2.ORDER_EVENT_TYPE_REFUNDED,
        event_time=to_timestamp(now())), "refunded_paid_minor"),
    ("commissions", "RecordOrderEvent", "shop", lambda: commissions_pb2.RecordOrderEventRequest(
        request_id=RID, order="users/u/orders/o", type=commissions_pb2.ORDER_EVENT_TYPE_CANCELLED,
        refunded_paid_minor=5, event_time=to_timestamp(now())), "refunded_paid_minor"),
    ("commissions", "RecordOrderEvent", "shop", lambda: commissions_pb2.RecordOrderEventRequest(
        request_id=RID, order="users/u/orders/o", event_time=to_timestamp(now())), "type"),
    ("commissions", "GetCommission", "officer", lambda: commissions_pb2.GetCommissionRequest(name="commissions/x"),
     "name"),
    ("commissions", "ListCommissions", "officer", lambda: commissions_pb2.ListCommissionsRequest(
        parent="creators/c", page_size=1001), "page_size"),
    ("commissions", "SettleCommissions", "admin", lambda: commissions_pb2.SettleCommissionsRequest(request_id=RID),
     "settle_before_time"),
    ("commissions", "FreezeCommission", "officer", lambda: commissions_pb2.FreezeCommissionRequest(
        request_id=RID, name="creators/c/commissions/x", reason="fraud"), "reason"),
    ("commissions", "UnfreezeCommission", "officer", lambda: commissions_pb2.UnfreezeCommissionRequest(
        request_id="x", name="creators/c/commissions/x"), "request_id"),
    ("commissions", "GetEarnings", "officer", lambda: commissions_pb2.GetEarningsRequest(parent="users/c"), "parent"),
    ("commissions", "GetEarnings", "officer", lambda: commissions_pb2.GetEarningsRequest(
        parent="creators/c", start_time=to_timestamp(now()), end_time=to_timestamp(now())), "end_time"),
    ("commissions", "PayOutCommissions", "admin", lambda: commissions_pb2.PayOutCommissionsRequest(
        request_id=RID, parent="creators/"), "parent"),
]


def _who(affiliate: Affiliate, who: str) -> tuple[tuple[str, str], ...]:
    from libs.auth.principal import Role
    return {"merchant": affiliate.merchant("mv"), "creator": affiliate.creator("cv"), "shop": affiliate.shop(),
            "officer": affiliate.officer(), "admin": affiliate.bearer("users/ops", Role.ADMIN)}[who]


@pytest.mark.parametrize(("stub", "method", "who", "request_of", "field"), CASES,
                         ids=[f"{case[1]}-{case[4]}-{index}" for index, case in enumerate(CASES)])
async def test_malformed_input_is_invalid_argument_naming_the_field(
        affiliate: Affiliate, stub: str, method: str, who: str, request_of: Callable[[], Message], field: str) -> None:
    call = getattr(getattr(affiliate, stub), method)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request_of(), metadata=_who(affiliate, who))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    fields = [v.field for v in status_detail(refused.value, error_details_pb2.BadRequest).field_violations]
    assert field in fields, fields

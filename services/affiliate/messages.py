"""Affiliate domain values to and from limelight.affiliate.v1 messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from google.protobuf.duration_pb2 import Duration
from limelight.affiliate.v1 import commissions_pb2, links_pb2, programs_pb2

from libs.errors import InvalidArgument
from libs.resource_names import ResourcePattern
from libs.timestamps import from_timestamp, to_timestamp
from services.affiliate.model.clicks import Click
from services.affiliate.model.commissions import Commission, CommissionState, NonAttribution, OrderEvent
from services.affiliate.model.links import TrackingLink
from services.affiliate.model.programs import AttributionModel, Program, ProgramState, ProgramTerms
from services.affiliate.usecases.clicks import RecordClick
from services.affiliate.usecases.commissions import AttributeOrder, Line, RecordOrderEvent
from services.affiliate.usecases.ports import PayoutRecord, Total

MERCHANT = ResourcePattern("merchants/{merchant}")
CREATOR = ResourcePattern("creators/{creator}")
PROGRAM = ResourcePattern("merchants/{merchant}/programs/{program}")
TRACKING_LINK = ResourcePattern("creators/{creator}/trackingLinks/{tracking_link}")
COMMISSION = ResourcePattern("creators/{creator}/commissions/{commission}")
ORDER = ResourcePattern("users/{user}/orders/{order}")
USER = ResourcePattern("users/{user}")

PROGRAM_FIELDS = ("display_name", "products", "commission_rate_bps", "cost_per_click_minor", "daily_click_cap_minor",
                  "attribution_window", "attribution_model", "return_window", "state")


def _duration(value: Duration) -> dt.timedelta:
    return value.ToTimedelta()


def _out_duration(value: dt.timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


# -- programmes ----------------------------------------------------------------------------------


def terms_in(message: programs_pb2.Program) -> ProgramTerms:
    model = programs_pb2.AttributionModel.Name(message.attribution_model).removeprefix("ATTRIBUTION_MODEL_")
    state = programs_pb2.ProgramState.Name(message.state).removeprefix("PROGRAM_STATE_")
    return ProgramTerms(
        display_name=message.display_name, products=tuple(message.products),
        commission_rate_bps=message.commission_rate_bps, cost_per_click_minor=message.cost_per_click_minor,
        daily_click_cap_minor=message.daily_click_cap_minor, currency_code=message.currency_code,
        attribution_window=_duration(message.attribution_window), attribution_model=AttributionModel(model),
        return_window=_duration(message.return_window),
        state=ProgramState.ACTIVE if state == "UNSPECIFIED" else ProgramState(state))


def masked_terms(message: programs_pb2.Program, paths: Sequence[str], current: ProgramTerms) -> ProgramTerms:
    """`current` with the fields `paths` names (all writable ones when empty) taken from `message`."""
    wanted = terms_in(message)
    chosen = set(paths or PROGRAM_FIELDS)
    if message.state == programs_pb2.PROGRAM_STATE_UNSPECIFIED and "state" in chosen and paths:
        raise InvalidArgument.for_field("program.state", "must be set when the mask names it")
    return ProgramTerms(**{name: getattr(wanted if name in chosen else current, name)
                           for name in ("display_name", "products", "commission_rate_bps", "cost_per_click_minor",
                                        "daily_click_cap_minor", "currency_code", "attribution_window",
                                        "attribution_model", "return_window", "state")})


def program_out(program: Program) -> programs_pb2.Program:
    terms = program.terms
    return programs_pb2.Program(
        name=program.name, display_name=terms.display_name, products=list(terms.products),
        commission_rate_bps=terms.commission_rate_bps, cost_per_click_minor=terms.cost_per_click_minor,
        daily_click_cap_minor=terms.daily_click_cap_minor, currency_code=terms.currency_code,
        attribution_window=_out_duration(terms.attribution_window),
        attribution_model=f"ATTRIBUTION_MODEL_{terms.attribution_model.value}",
        return_window=_out_duration(terms.return_window),
        state=f"PROGRAM_STATE_{terms.state.value}",
        create_time=to_timestamp(program.create_time), update_time=to_timestamp(program.update_time))


def program_state_filter(state: int) -> ProgramState | None:
    if state == programs_pb2.PROGRAM_STATE_UNSPECIFIED:
        return None
    return ProgramState(programs_pb2.ProgramState.Name(state).removeprefix("PROGRAM_STATE_"))


# -- links and clicks ------------------------------------------------------------------------------


def link_out(link: TrackingLink, program: Program | None, counted_clicks: int, base_url: str) -> links_pb2.TrackingLink:
    message = links_pb2.TrackingLink(
        name=link.name, program=link.program, product=link.product, token=link.token,
        url=f"{base_url}{link.short_code}?t={link.token}", counted_clicks=counted_clicks,
        create_time=to_timestamp(link.create_time), short_code=link.short_code)
    if link.commission_rate_bps is not None:
        message.commission_rate_bps = link.commission_rate_bps
    rate = link.commission_rate_bps
    if rate is None and program is not None:
        rate = program.terms.commission_rate_bps
    message.effective_commission_rate_bps = rate or 0
    return message


def click_in(request: links_pb2.RecordClickRequest) -> RecordClick:
    return RecordClick(
        request_id=request.request_id, token=request.token, visitor_id=request.visitor_id, user=request.user,
        user_agent=request.user_agent, ip_hash=request.ip_hash, client_ip=request.client_ip,
        country_code=request.country_code, purpose_header=request.purpose_header,
        click_time=from_timestamp(request.click_time, field="click_time"))


def click_out(click: Click, redirect_url: str) -> links_pb2.Click:
    return links_pb2.Click(
        name=click.name, counted=click.counted,
        filter_reason=f"CLICK_FILTER_REASON_{click.filter_reason.value if click.filter_reason else 'UNSPECIFIED'}",
        cpc_earned_minor=click.cpc_earned_minor, visitor_id=click.visitor_id, redirect_url=redirect_url,
        click_time=to_timestamp(click.click_time))


# -- commissions -------------------------------------------------------------------------------------


def commission_out(commission: Commission) -> commissions_pb2.Commission:
    message = commissions_pb2.Commission(
        name=commission.name, kind=f"COMMISSION_KIND_{commission.kind.value}",
        state=state_out(commission.state), state_reason=commission.state_reason,
        tracking_link=commission.tracking_link, click=commission.click, order=commission.order,
        base_amount_minor=commission.base_amount_minor, rate_bps=commission.rate_bps,
        amount_minor=commission.amount_minor, currency_code=commission.currency_code,
        create_time=to_timestamp(commission.create_time), clawback_of=commission.clawback_of,
        refunded_paid_minor=commission.refunded_paid_minor, payout_reference=commission.payout_reference)
    if commission.settle_after_time is not None:
        message.settle_after_time.CopyFrom(to_timestamp(commission.settle_after_time))
    if commission.settle_time is not None:
        message.settle_time.CopyFrom(to_timestamp(commission.settle_time))
    return message


def state_out(state: CommissionState) -> str:
    return f"COMMISSION_STATE_{state.value}"


def state_filter(state: int) -> CommissionState | None:
    if state == commissions_pb2.COMMISSION_STATE_UNSPECIFIED:
        return None
    return CommissionState(commissions_pb2.CommissionState.Name(state).removeprefix("COMMISSION_STATE_"))


def totals_out(totals: Sequence[Total]) -> list[commissions_pb2.CommissionTotal]:
    return [commissions_pb2.CommissionTotal(state=state_out(total.state), currency_code=total.currency_code,
                                            amount_minor=total.amount_minor) for total in totals]


def non_attribution_out(reason: NonAttribution | None) -> str:
    return f"NON_ATTRIBUTION_REASON_{reason.value if reason else 'UNSPECIFIED'}"


def attribute_in(request: commissions_pb2.AttributeOrderRequest) -> AttributeOrder:
    ORDER.parse(request.order, field="order")
    MERCHANT.parse(request.merchant, field="merchant")
    for index, line in enumerate(request.lines):
        if not line.product.startswith(f"{request.merchant}/products/"):
            raise InvalidArgument.for_field(f"lines[{index}].product", f"{line.product} is not a product of "
                                            f"{request.merchant}", reason="PRODUCT_OF_ANOTHER_MERCHANT")
    return AttributeOrder(
        request_id=request.request_id, order=request.order, merchant=request.merchant, visitor_id=request.visitor_id,
        lines=tuple(Line(line.product, line.paid_minor) for line in request.lines),
        currency_code=request.currency_code, order_time=from_timestamp(request.order_time, field="order_time"))


def order_event_in(request: commissions_pb2.RecordOrderEventRequest) -> RecordOrderEvent:
    ORDER.parse(request.order, field="order")
    event = OrderEvent(commissions_pb2.OrderEventType.Name(request.type).removeprefix("ORDER_EVENT_TYPE_"))
    if event is not OrderEvent.REFUNDED and request.refunded_paid_minor:
        raise InvalidArgument.for_field("refunded_paid_minor", "only a REFUNDED event returns money")
    if event is OrderEvent.REFUNDED and request.refunded_paid_minor <= 0:
        raise InvalidArgument.for_field("refunded_paid_minor", "a REFUNDED event must return a positive amount")
    return RecordOrderEvent(request.request_id, request.order, event, request.refunded_paid_minor,
                            from_timestamp(request.event_time, field="event_time"))


def payouts_out(payouts: Sequence[PayoutRecord]) -> list[commissions_pb2.CommissionPayout]:
    return [commissions_pb2.CommissionPayout(reference=p.reference, currency_code=p.currency_code,
                                             amount_minor=p.amount_minor, commission_count=p.commission_count)
            for p in payouts]

"""Commissions and their lifecycle: attribution, CPS on the price paid, refunds, freezes, clawbacks.

    PENDING --(return window after fulfilment passes)--> SETTLED --(payout)--> PAID
    PENDING/FROZEN --(cancel, full refund)--> INELIGIBLE
    any but PAID/INELIGIBLE --(fraud suspected)--> FROZEN --(officer lifts it)--> the state it left
    SETTLED/PAID --(refund, cancel)--> unchanged, plus a negative commission (the clawback)

Amounts are integer minor units; a rate is basis points and commissions round down.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from libs.errors import FailedPrecondition
from services.affiliate.model.programs import AttributionModel

BPS = 10_000


class CommissionState(enum.StrEnum):
    PENDING = "PENDING"
    SETTLED = "SETTLED"
    INELIGIBLE = "INELIGIBLE"
    FROZEN = "FROZEN"
    PAID = "PAID"


class CommissionKind(enum.StrEnum):
    SALE = "SALE"
    CLICK = "CLICK"


class NonAttribution(enum.StrEnum):
    NO_CLICK_IN_WINDOW = "NO_CLICK_IN_WINDOW"
    SELF_PURCHASE = "SELF_PURCHASE"
    PRODUCTS_NOT_IN_PROGRAM = "PRODUCTS_NOT_IN_PROGRAM"
    PROGRAM_INACTIVE = "PROGRAM_INACTIVE"
    NO_VISITOR = "NO_VISITOR"


class OrderEvent(enum.StrEnum):
    FULFILLED = "FULFILLED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


FINAL = frozenset({CommissionState.PAID, CommissionState.INELIGIBLE})
CLICK_BURST = "CLICK_BURST"
MANY_ORDERS_FROM_ONE_VISITOR = "MANY_ORDERS_FROM_ONE_VISITOR"


@dataclass(frozen=True)
class Commission:
    creator: str  # creators/{creator}
    commission_id: str
    kind: CommissionKind
    state: CommissionState
    state_reason: str
    tracking_link: str
    click: str
    order: str  # users/{user}/orders/{order}, '' for clicks
    order_paid_minor: int  # the whole order's paid amount (the refund share's denominator)
    original_base_minor: int  # the eligible lines' paid amount before refunds
    base_amount_minor: int  # net of refunds
    refunded_paid_minor: int
    rate_bps: int
    amount_minor: int
    currency_code: str
    return_window: dt.timedelta
    settle_after_time: dt.datetime | None
    create_time: dt.datetime
    settle_time: dt.datetime | None = None
    frozen_from: CommissionState | None = None
    clawback_of: str = ""
    payout_reference: str = ""

    @property
    def name(self) -> str:
        return f"{self.creator}/commissions/{self.commission_id}"


def sale_amount(base_minor: int, rate_bps: int) -> int:
    return base_minor * rate_bps // BPS


@dataclass(frozen=True)
class CandidateClick:
    """A counted click of the buyer's visitor on one of the merchant's programmes' links."""

    click: str
    link: str
    creator: str
    program: str
    click_time: dt.datetime
    attribution_window: dt.timedelta
    attribution_model: AttributionModel
    burst: bool
    visitor_pseudonym: str


def credited_click(candidates: Sequence[CandidateClick], order_time: dt.datetime) -> CandidateClick | None:
    """The click an order is credited to: inside its programme's window, last or first per the
    programme of the latest such click (a merchant's programmes agree on the model in practice;
    when they do not, the latest click's programme decides)."""
    inside = sorted((c for c in candidates if c.click_time <= order_time
                     and order_time - c.click_time <= c.attribution_window),
                    key=lambda c: (c.click_time, c.click))
    if not inside:
        return None
    latest = inside[-1]
    if latest.attribution_model is AttributionModel.LAST_CLICK:
        return latest
    return next(c for c in inside if c.program == latest.program)


def fulfilled(commission: Commission, at: dt.datetime) -> Commission:
    if commission.settle_after_time is not None or commission.state in FINAL:
        return commission  # the first fulfilment starts the window; a repeat changes nothing
    return replace(commission, settle_after_time=at + commission.return_window)


def net_base(commission: Commission, refunded_total: int) -> int:
    """The eligible base after refunds totalling `refunded_total` of the order: the same share comes off."""
    if refunded_total > commission.order_paid_minor:
        raise FailedPrecondition("refunds exceed what the order paid", reason="REFUND_EXCEEDS_ORDER",
                                 metadata={"order": commission.order, "order_paid_minor": str(commission.order_paid_minor),
                                           "refunded_paid_minor": str(refunded_total)})
    return commission.original_base_minor - commission.original_base_minor * refunded_total // commission.order_paid_minor


def refunded(commission: Commission, refunded_total: int) -> Commission:
    """A commission not yet settled after refunds totalling `refunded_total`: pro rata, INELIGIBLE at 100 %."""
    base = net_base(commission, refunded_total)
    changed = replace(commission, refunded_paid_minor=refunded_total, base_amount_minor=base,
                      amount_minor=sale_amount(base, commission.rate_bps))
    return ineligible(changed, "ORDER_REFUNDED") if refunded_total == commission.order_paid_minor else changed


def clawed_back_amount(commission: Commission, refunded_total: int) -> int:
    """What a refund after settlement takes back: the CPS on the newly refunded share."""
    before = sale_amount(net_base(commission, commission.refunded_paid_minor), commission.rate_bps)
    return before - sale_amount(net_base(commission, refunded_total), commission.rate_bps)


def ineligible(commission: Commission, reason: str) -> Commission:
    return replace(commission, state=CommissionState.INELIGIBLE, state_reason=reason, frozen_from=None, amount_minor=0)


def frozen(commission: Commission, reason: str) -> Commission:
    if commission.state in FINAL:
        raise FailedPrecondition(f"{commission.name} is {commission.state.value}: it can no longer be frozen",
                                 reason="COMMISSION_FINAL", metadata={"commission": commission.name})
    if commission.state is CommissionState.FROZEN:
        return replace(commission, state_reason=reason)
    return replace(commission, state=CommissionState.FROZEN, state_reason=reason, frozen_from=commission.state)


def unfrozen(commission: Commission) -> Commission:
    if commission.state is not CommissionState.FROZEN or commission.frozen_from is None:
        raise FailedPrecondition(f"{commission.name} is not frozen", reason="COMMISSION_NOT_FROZEN",
                                 metadata={"commission": commission.name})
    return replace(commission, state=commission.frozen_from, state_reason="UNFROZEN", frozen_from=None)


def settled(commission: Commission, at: dt.datetime) -> Commission:
    return replace(commission, state=CommissionState.SETTLED, state_reason="RETURN_WINDOW_PASSED", settle_time=at)


def clawback(original: Commission, clawed_minor: int, clawback_id: str, reason: str, at: dt.datetime) -> Commission:
    """A negative commission taking back `clawed_minor` of a settled or paid commission; settled at once,
    so the next payout nets it (dubinc/dub#4371)."""
    return replace(original, commission_id=clawback_id, state=CommissionState.SETTLED, state_reason=reason,
                   base_amount_minor=0, original_base_minor=0, refunded_paid_minor=0, amount_minor=-clawed_minor,
                   settle_after_time=at, create_time=at, settle_time=at, frozen_from=None,
                   clawback_of=original.name, payout_reference="")

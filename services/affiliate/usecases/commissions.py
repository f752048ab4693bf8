"""Attribution and the commission lifecycle, each a unit of work with its audit events."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from libs.errors import FailedPrecondition, NotFound
from libs.pagination import PageTokens, page_size
from libs.timestamps import epoch_us
from services.affiliate.model.access import Caller, require_creator, user_of_creator
from services.affiliate.model.commissions import (
    CLICK_BURST,
    MANY_ORDERS_FROM_ONE_VISITOR,
    Commission,
    CommissionKind,
    CommissionState,
    NonAttribution,
    OrderEvent,
    clawback,
    clawed_back_amount,
    credited_click,
    frozen,
    fulfilled,
    ineligible,
    net_base,
    refunded,
    sale_amount,
    settled,
    unfrozen,
)
from services.affiliate.usecases.catalogue import Page, effective_rate
from services.affiliate.usecases.ports import (
    AffiliateUnit,
    Attribution,
    AuditTrail,
    PayoutRecord,
    Reads,
    Total,
    fingerprint,
)

COMMISSION_PAGES = PageTokens("affiliate.ListCommissions")
DEFAULT_COMMISSION_PAGE = 100
_IDS = uuid.UUID("6f1f3a52-8d0e-4c55-9a36-0d2b7f9c1e27")
ALREADY_PAID = frozenset({CommissionState.SETTLED, CommissionState.PAID})


def commission_id(*parts: str) -> str:
    """Ids follow from what caused the commission, so a replayed event names the same one."""
    return uuid.uuid5(_IDS, "/".join(parts)).hex


@dataclass(frozen=True)
class FraudPolicy:
    # More attributed orders than this from one visitor pseudonym within `orders_window` freezes the next.
    max_orders_per_pseudonym: int = 3
    orders_window: dt.timedelta = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Line:
    product: str
    paid_minor: int


@dataclass(frozen=True)
class AttributeOrder:
    request_id: str
    order: str  # users/{user}/orders/{order}
    merchant: str
    visitor_id: str
    lines: Sequence[Line]
    currency_code: str
    order_time: dt.datetime

    def asked(self) -> dict[str, object]:
        return {"order": self.order, "merchant": self.merchant, "visitor_id": self.visitor_id,
                "lines": [[line.product, line.paid_minor] for line in self.lines], "currency": self.currency_code,
                "order_time": self.order_time.isoformat()}


@dataclass(frozen=True)
class AttributionResult:
    attribution: Attribution
    commission: Commission | None
    duplicate_order: bool


def attribute_order(command: AttributeOrder, unit: AffiliateUnit, audit: AuditTrail,
                    fraud: FraudPolicy) -> AttributionResult:
    earlier = unit.claim(command.request_id, "AttributeOrder", fingerprint("AttributeOrder", command.asked()))
    existing = unit.attribution(command.order)
    if earlier is not None and existing is not None:
        return AttributionResult(existing, unit.commission(existing.commission) if existing.commission else None,
                                 earlier == "DUPLICATE")
    if existing is not None:
        unit.set_result(command.request_id, "DUPLICATE")
        unit.record(audit.event("affiliate.AttributeOrder", command.order, reason="DUPLICATE_ORDER",
                                subject=_buyer(command.order), rejected=True))
        return AttributionResult(existing, unit.commission(existing.commission) if existing.commission else None, True)
    unit.set_result(command.request_id, "FIRST")
    buyer = _buyer(command.order)
    attribution, commission = _decide(command, unit, buyer, fraud)
    unit.add_attribution(attribution)
    attributes = {"merchant": command.merchant, "attributed": str(attribution.attributed).lower()}
    if commission is not None:
        unit.save_commission(commission, _program_of(unit, commission))
        attributes |= {"commission": commission.name, "state": commission.state.value, "click": commission.click,
                       "amount_minor": str(commission.amount_minor), "currency_code": commission.currency_code}
    unit.record(audit.event("affiliate.AttributeOrder", command.order, subject=buyer,
                            reason=attribution.reason.value if attribution.reason else "ATTRIBUTED",
                            attributes=attributes))
    return AttributionResult(attribution, commission, False)


def _decide(command: AttributeOrder, unit: AffiliateUnit, buyer: str,
            fraud: FraudPolicy) -> tuple[Attribution, Commission | None]:
    def not_attributed(reason: NonAttribution, click: str = "", pseudonym: str = "") -> tuple[Attribution, None]:
        return Attribution(command.order, command.merchant, buyer, command.visitor_id, False, reason, "", click,
                           pseudonym, command.order_time), None

    if not command.visitor_id:
        return not_attributed(NonAttribution.NO_VISITOR)
    chosen = credited_click(unit.candidate_clicks(command.visitor_id, command.merchant, command.order_time),
                            command.order_time)
    if chosen is None:
        return not_attributed(NonAttribution.NO_CLICK_IN_WINDOW)
    if user_of_creator(chosen.creator) == buyer:
        return not_attributed(NonAttribution.SELF_PURCHASE, chosen.click, chosen.visitor_pseudonym)
    program = unit.program(chosen.program)
    link = unit.link(chosen.link)
    assert program is not None and link is not None, "a counted click names a stored link and programme"
    if not program.active:
        return not_attributed(NonAttribution.PROGRAM_INACTIVE, chosen.click, chosen.visitor_pseudonym)
    base = sum(line.paid_minor for line in command.lines if program.covers(line.product))
    if base == 0 and not any(program.covers(line.product) for line in command.lines):
        return not_attributed(NonAttribution.PRODUCTS_NOT_IN_PROGRAM, chosen.click, chosen.visitor_pseudonym)
    rate = effective_rate(link, program)
    state, reason = CommissionState.PENDING, "ORDER_ATTRIBUTED"
    if chosen.burst:
        state, reason = CommissionState.FROZEN, CLICK_BURST
    elif chosen.visitor_pseudonym and unit.orders_from_pseudonym(
            chosen.visitor_pseudonym, command.order_time - fraud.orders_window) >= fraud.max_orders_per_pseudonym:
        state, reason = CommissionState.FROZEN, MANY_ORDERS_FROM_ONE_VISITOR
    commission = Commission(
        chosen.creator, commission_id("sale", command.order), CommissionKind.SALE, state, reason, chosen.link,
        chosen.click, command.order, sum(line.paid_minor for line in command.lines), base, base, 0, rate,
        sale_amount(base, rate), command.currency_code, program.terms.return_window, None, command.order_time,
        frozen_from=CommissionState.PENDING if state is CommissionState.FROZEN else None)
    return Attribution(command.order, command.merchant, buyer, command.visitor_id, True, None, commission.name,
                       chosen.click, chosen.visitor_pseudonym, command.order_time), commission


@dataclass(frozen=True)
class RecordOrderEvent:
    request_id: str
    order: str
    event: OrderEvent
    refunded_paid_minor: int
    event_time: dt.datetime

    def asked(self) -> dict[str, object]:
        return {"order": self.order, "event": self.event.value, "refunded": self.refunded_paid_minor,
                "event_time": self.event_time.isoformat()}


@dataclass(frozen=True)
class OrderEventResult:
    commission: Commission | None
    clawback: Commission | None


def record_order_event(command: RecordOrderEvent, unit: AffiliateUnit, audit: AuditTrail) -> OrderEventResult:
    earlier = unit.claim(command.request_id, "RecordOrderEvent", fingerprint("RecordOrderEvent", command.asked()))
    attribution = unit.attribution(command.order)
    commission = unit.commission(attribution.commission) if attribution and attribution.commission else None
    if earlier is not None:
        return OrderEventResult(commission, unit.commission(earlier) if earlier else None)
    if attribution is None:
        # The order's AttributeOrder has not arrived (the shop's outbox retries a failed delivery
        # later, after newer ones): refused, so the shop sends this event again, never lost.
        raise FailedPrecondition(f"{command.order} was not reported yet: send AttributeOrder first",
                                 reason="ORDER_NOT_REPORTED", metadata={"order": command.order})
    unit.set_result(command.request_id, "")
    if commission is None:
        unit.record(audit.event("affiliate.RecordOrderEvent", command.order, reason="ORDER_NOT_ATTRIBUTED",
                                subject=_buyer(command.order), attributes={"event": command.event.value}))
        return OrderEventResult(None, None)
    changed, clawed = _apply(commission, command)
    program = _program_of(unit, commission)
    unit.save_commission(changed, program)
    attributes = {"event": command.event.value, "from_state": commission.state.value, "state": changed.state.value,
                  "amount_minor": str(changed.amount_minor), "refunded_paid_minor": str(changed.refunded_paid_minor),
                  "order": command.order}
    unit.record(audit.event("affiliate.RecordOrderEvent", changed.name, reason=changed.state_reason,
                            subject=user_of_creator(changed.creator), attributes=attributes))
    if clawed is not None:
        unit.save_commission(clawed, program)
        unit.set_result(command.request_id, clawed.name)
        unit.record(audit.event("affiliate.RecordOrderEvent", clawed.name, reason=clawed.state_reason,
                                subject=user_of_creator(clawed.creator),
                                attributes={"kind": "CLAWBACK", "clawback_of": commission.name,
                                            "amount_minor": str(clawed.amount_minor), "order": command.order}))
    return OrderEventResult(changed, clawed)


def _apply(commission: Commission, command: RecordOrderEvent) -> tuple[Commission, Commission | None]:
    if command.event is OrderEvent.FULFILLED:
        return fulfilled(commission, command.event_time), None
    refunded_total = commission.order_paid_minor if command.event is OrderEvent.CANCELLED \
        else commission.refunded_paid_minor + command.refunded_paid_minor
    net_base(commission, refunded_total)  # refunds beyond what was paid are refused, whatever the state
    if commission.state is CommissionState.INELIGIBLE:
        return commission, None
    paid_already = commission.state in ALREADY_PAID or commission.frozen_from in ALREADY_PAID
    if not paid_already:
        if command.event is OrderEvent.CANCELLED:
            return ineligible(commission, "ORDER_CANCELLED"), None
        return refunded(commission, refunded_total), None
    clawed_minor = clawed_back_amount(commission, refunded_total)
    kept = dataclasses.replace(commission, refunded_paid_minor=refunded_total,
                               base_amount_minor=net_base(commission, refunded_total))
    if clawed_minor == 0:
        return kept, None
    reason = "ORDER_CANCELLED_AFTER_SETTLEMENT" if command.event is OrderEvent.CANCELLED else "REFUNDED_AFTER_SETTLEMENT"
    return kept, clawback(commission, clawed_minor, commission_id("clawback", commission.name, command.request_id),
                          reason, command.event_time)


@dataclass(frozen=True)
class SettleCommissions:
    request_id: str
    settle_before: dt.datetime


@dataclass(frozen=True)
class Settlement:
    settled_count: int
    totals: list[Total]


def settle_commissions(command: SettleCommissions, unit: AffiliateUnit, audit: AuditTrail,
                       now: dt.datetime) -> Settlement:
    before = min(command.settle_before, now)
    earlier = unit.claim(command.request_id, "SettleCommissions",
                         fingerprint("SettleCommissions", {"before": command.settle_before.isoformat()}))
    if earlier is not None:
        stored = json.loads(earlier)
        return Settlement(stored["count"], [Total(CommissionState.SETTLED, currency, amount)
                                            for currency, amount in stored["totals"]])
    sums: dict[str, int] = defaultdict(int)
    due = unit.settleable(before)
    for commission in due:
        done = settled(commission, now)
        unit.save_commission(done, _program_of(unit, commission))
        sums[done.currency_code] += done.amount_minor
        unit.record(audit.event("affiliate.SettleCommissions", done.name, reason=done.state_reason,
                                subject=user_of_creator(done.creator),
                                attributes={"amount_minor": str(done.amount_minor), "currency_code": done.currency_code}))
    totals = sorted(sums.items())
    unit.set_result(command.request_id, json.dumps({"count": len(due), "totals": totals}))
    return Settlement(len(due), [Total(CommissionState.SETTLED, currency, amount) for currency, amount in totals])


@dataclass(frozen=True)
class ChangeFreeze:
    request_id: str
    caller: Caller
    name: str
    freeze: bool
    reason: str


def change_freeze(command: ChangeFreeze, unit: AffiliateUnit, audit: AuditTrail) -> Commission:
    method = "FreezeCommission" if command.freeze else "UnfreezeCommission"
    earlier = unit.claim(command.request_id, method, fingerprint(method, {"name": command.name, "reason": command.reason}))
    commission = unit.commission(command.name)
    if commission is None:
        raise commission_not_found(command.name)
    if earlier is not None:
        return commission
    changed = frozen(commission, command.reason) if command.freeze else unfrozen(commission)
    unit.save_commission(changed, _program_of(unit, commission))
    unit.set_result(command.request_id, changed.name)
    unit.record(audit.event(f"affiliate.{method}", changed.name, reason=changed.state_reason,
                            subject=user_of_creator(changed.creator),
                            attributes={"from_state": commission.state.value, "state": changed.state.value}))
    return changed


@dataclass(frozen=True)
class PayOut:
    request_id: str
    caller: Caller
    creator: str


def pay_out(command: PayOut, unit: AffiliateUnit, audit: AuditTrail, now: dt.datetime) -> list[PayoutRecord]:
    """Pays the settled balance per currency through the embedded payout ledger (`payouts` table)."""
    require_creator(command.caller, command.creator, command.creator)
    earlier = unit.claim(command.request_id, "PayOutCommissions",
                         fingerprint("PayOutCommissions", {"creator": command.creator}))
    if earlier is not None:
        return [PayoutRecord(item["reference"], command.creator, item["currency"], item["amount"], item["count"], now)
                for item in json.loads(earlier)]
    by_currency: dict[str, list[Commission]] = defaultdict(list)
    for commission in unit.payable(command.creator):
        by_currency[commission.currency_code].append(commission)
    payouts = []
    for currency, commissions in sorted(by_currency.items()):
        amount = sum(commission.amount_minor for commission in commissions)
        if amount <= 0:
            continue  # clawbacks larger than the earnings carry over to the next payout
        payout = PayoutRecord(f"payouts/{commission_id('payout', command.request_id, currency)}", command.creator,
                              currency, amount, len(commissions), now)
        unit.add_payout(payout)
        for commission in commissions:
            paid = dataclasses.replace(commission, state=CommissionState.PAID, state_reason="PAID_OUT",
                                       payout_reference=payout.reference)
            unit.save_commission(paid, _program_of(unit, commission))
        unit.record(audit.event("affiliate.PayOutCommissions", payout.reference, subject=user_of_creator(command.creator),
                                attributes={"amount_minor": str(amount), "currency_code": currency,
                                            "commission_count": str(len(commissions))}))
        payouts.append(payout)
    if not payouts:
        raise FailedPrecondition(f"{command.creator} has no positive settled balance", reason="NOTHING_TO_PAY",
                                 metadata={"creator": command.creator})
    unit.set_result(command.request_id, json.dumps([{"reference": p.reference, "currency": p.currency_code,
                                                     "amount": p.amount_minor, "count": p.commission_count}
                                                    for p in payouts]))
    return payouts


def commission_not_found(name: str) -> NotFound:
    return NotFound(f"no commission {name}", resource_name=name, reason="COMMISSION_NOT_FOUND")


def get_commission(reads: Reads, caller: Caller, name: str) -> Commission:
    creator = name.split("/commissions/", 1)[0]
    require_creator(caller, creator, name, officers=True)
    commission = reads.commission(name)
    if commission is None:
        raise commission_not_found(name)
    return commission


@dataclass(frozen=True)
class CommissionPage:
    page: Page[Commission]
    totals: list[Total]


def list_commissions(reads: Reads, caller: Caller, creator: str, state: CommissionState | None, requested_size: int,
                     page_token: str) -> CommissionPage:
    require_creator(caller, creator, creator, officers=True)
    bound_to = f"{creator}|{state.value if state else ''}"
    after = COMMISSION_PAGES.decode(page_token, bound_to=bound_to, shape=(int, str))
    size = page_size(requested_size, default=DEFAULT_COMMISSION_PAGE)
    found = reads.commissions(creator, state, (int(after[0]), str(after[1])) if after else None, size + 1)
    page = found[:size]
    token = COMMISSION_PAGES.encode(epoch_us(page[-1].create_time), page[-1].commission_id, bound_to=bound_to) \
        if len(found) > size else ""
    return CommissionPage(Page(page, token), reads.totals(creator, None, None))


def earnings(reads: Reads, caller: Caller, creator: str, since: dt.datetime | None,
             until: dt.datetime | None) -> list[Total]:
    require_creator(caller, creator, creator, officers=True)
    return reads.totals(creator, since, until)


def _buyer(order: str) -> str:
    return order.split("/orders/", 1)[0]


def _program_of(unit: AffiliateUnit, commission: Commission) -> str:
    link = unit.link(commission.tracking_link)
    assert link is not None, "a commission names a stored link"
    return link.program

"""Checkout and orders: plain async functions of (command, context), over the ports in `ports.py`.

A write is a unit of work (`Work`): a function of the open `Unit` that reads, decides and
writes in one transaction, run by the store's committer one at a time; stock moves inside a
unit only through the unit's conditional updates, so the invariant lives in the store. Calls
to the payment provider happen between units, never inside one, and every step after one
that succeeded is compensated on failure:

    checkout:  unit [claim request id, price, minors' rules, reserve, order CREATED]
               -> provider.authorize(order)            declined: unit [release, CANCELLED]
               -> unit [RESERVED]                      lost (crash): the sweep voids, releases
    capture:   provider.capture -> unit [PAID, reserved -> sold]
    cancel:    provider.void    -> unit [CANCELLED, release]
    refund:    unit [refund intent] -> provider.refund -> unit [refund applied, restock]

Every provider call is idempotent by the order's name (and the refund's request id), so a
retry, the sweep and a compensation may each run it again with no second effect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable
from services.shop.model import (
    CancelReason,
    Fulfillment,
    Order,
    OrderLine,
    OrderState,
    Payment,
    PaymentState,
    Product,
    ProductState,
    Purchase,
    Refund,
    Reservation,
    ReservationState,
    fingerprint,
    merged_needs,
    month_start,
    purchase_rules,
    refund_lines,
    tax_included,
)
from services.shop.usecases.catalogue import (
    product_not_found,
)
from services.shop.usecases.ports import (
    Caller,
    PaymentProvider,
    ShopContext,
    Unit,
)


@dataclass(frozen=True)
class CheckoutItem:
    product: str
    variant: str
    quantity: int


@dataclass(frozen=True)
class Checkout:
    request_id: str
    buyer: str  # the user id
    items: tuple[CheckoutItem, ...]
    provider: str
    token: str
    expected_total_minor: int
    currency_code: str
    live: str = ""
    affiliate_visitor_id: str = ""
    shipping_address: str = ""
    recipient_name: str = ""

    def print_(self) -> str:
        return fingerprint({"buyer": self.buyer, "items": [[i.product, i.variant, i.quantity] for i in self.items],
                            "provider": self.provider, "token": self.token, "total": self.expected_total_minor,
                            "currency": self.currency_code, "live": self.live, "visitor": self.affiliate_visitor_id,
                            "shipping": self.shipping_address, "recipient": self.recipient_name})


class PaymentDeclined(FailedPrecondition):
    default_reason = "PAYMENT_DECLINED"


def _provider(ctx: ShopContext, name: str) -> PaymentProvider:
    provider = ctx.payments.get(name)
    if provider is None:
        raise FailedPrecondition(f"no payment provider {name!r}; this deployment takes {', '.join(ctx.payments)}",
                                 reason="PAYMENT_PROVIDER_UNKNOWN", metadata={"provider": name})
    return provider


def _priced_lines(unit: Unit, command: Checkout) -> tuple[str, list[OrderLine], list[Product]]:
    merchants = {item.product.split("/")[1] for item in command.items}
    if len(merchants) != 1:
        raise FailedPrecondition("an order is to one merchant", reason="MULTIPLE_MERCHANTS")
    names = [(item.product, item.variant) for item in command.items]
    if len(set(names)) != len(names):
        raise InvalidArgument.for_field("items", "each product (and variant) once")
    lines, products = [], []
    for index, item in enumerate(command.items):
        product = unit.product(item.product)
        if product is None or product.state is ProductState.DRAFT:
            raise product_not_found(item.product)
        product.require_on_sale()
        if product.currency_code != command.currency_code:
            raise FailedPrecondition(f"{product.name} is priced in {product.currency_code}", reason="CURRENCY_MISMATCH",
                                     metadata={"product": product.name, "currency_code": product.currency_code})
        variant = product.variant(item.variant, field_path=f"items[{index}].variant")
        unit_price, flash = product.unit_price(variant), False
        if command.live:
            pin = unit.active_pin(command.live, product.name)
            flash_price = pin.flash_price_at(unit.now) if pin is not None else None
            if flash_price is not None:
                unit_price, flash = flash_price, True
        total = unit_price * item.quantity
        lines.append(OrderLine(product.name, variant.variant_id if variant else "", product.title, item.quantity,
                               unit_price, tax_included(total, product.vat_rate_bps), total, product.vat_rate_bps,
                               flash, product.stock_needs(variant, 1)))
        products.append(product)
    return merchants.pop(), lines, products


async def checkout(ctx: ShopContext, caller: Caller, command: Checkout) -> Order:
    if caller.user != command.buyer:
        raise PermissionDenied(f"{caller.subject} cannot buy for users/{command.buyer}", reason="NOT_BUYER")
    provider = _provider(ctx, command.provider)
    funding = provider.funding(command.token)
    # Derived from the request, so a retry names the same order (and costs no entropy).
    order_id = hashlib.sha256(f"{command.buyer}|{command.request_id}".encode()).hexdigest()[:16]
    buyer_name = f"users/{command.buyer}"
    sealed = (await _seal(ctx, buyer_name, "order.shipping_address", command.shipping_address),
              await _seal(ctx, buyer_name, "order.recipient_name", command.recipient_name))
    print_ = command.print_()
    # One event: SUCCEEDED with the order, or (the store's `refused`) REJECTED with the reason.
    created = ctx.audit.event("shop.Checkout", f"{buyer_name}/orders/{order_id}", subject=buyer_name)

    def create(unit: Unit) -> Order:
        earlier = unit.claim(command.request_id, "Checkout", print_)
        if earlier is not None:
            found = unit.order(earlier)
            assert found is not None
            return found
        merchant, lines, products = _priced_lines(unit, command)
        total = sum(line.total_minor for line in lines)
        if total != command.expected_total_minor:
            raise FailedPrecondition(f"the order costs {total}, not {command.expected_total_minor}",
                                     reason="PRICE_CHANGED", metadata={"total_minor": str(total)})
        consent = caller.age is not None and caller.age < 18 and unit.parental_consent(buyer_name)
        needs_consent = purchase_rules(
            Purchase(caller.age, total, command.currency_code, funding, frozenset(p.type for p in products),
                     max(p.minimum_age for p in products)),
            spent_this_month=unit.spent_since(command.buyer, month_start(unit.now)) if (caller.age or 0) < 18 else 0,
            consent=consent, policy=ctx.rules.spending)
        order = Order(command.buyer, order_id, merchant, OrderState.CREATED, tuple(lines), command.currency_code,
                      Payment(PaymentState.PENDING, provider.name, funding), f"merchants/{merchant}/reservations/{order_id}",
                      command.request_id, unit.now, unit.now, unit.now + ctx.rules.checkout_hold, live=command.live,
                      affiliate_visitor_id=command.affiliate_visitor_id, parental_consent_required=needs_consent,
                      shipping_address=command.shipping_address, recipient_name=command.recipient_name)
        needs = merged_needs(order.stock)
        unit.reserve(needs)
        unit.insert_reservation(Reservation(merchant, order_id, order.name, command.request_id, needs,
                                            ReservationState.ACTIVE, unit.now, order.reservation_expire_time))
        unit.insert_order(order, sealed)
        unit.remember(command.request_id, "Checkout", print_, order.name)
        unit.audit(created)
        return order

    order = await ctx.store.run(create, refused=created)
    if order.state is OrderState.CREATED:
        return await _authorize(ctx, provider, order, command.token, created if order.order_id == order_id else None)
    if order.state is OrderState.CANCELLED and order.cancel_reason is CancelReason.PAYMENT_DECLINED:
        raise PaymentDeclined(f"the provider declined the payment of {order.name}", metadata={"order": order.name})
    return order


async def _seal(ctx: ShopContext, subject: str, field_name: str, text: str) -> bytes | None:
    if not text:
        return None
    if ctx.sealer is None:
        raise Unavailable("personal data cannot be sealed here", reason="PERSONAL_DATA_UNAVAILABLE")
    return await ctx.sealer.seal(subject, field_name, text)


async def _authorize(ctx: ShopContext, provider: PaymentProvider, order: Order, token: str,
                     created: object | None = None) -> Order:
    try:
        authorization = await provider.authorize(order.name, token, order.total_minor, order.currency_code)
    except Exception:
        await compensate(ctx, order.name, CancelReason.EXPIRED)
        raise
    if not authorization.approved:
        await compensate(ctx, order.name, CancelReason.PAYMENT_DECLINED)
        raise PaymentDeclined(f"the provider declined the payment: {authorization.decline_reason}",
                              metadata={"order": order.name, "decline_reason": authorization.decline_reason})
    event = ctx.audit.then(created, "shop.AuthorizePayment", attributes={"amount_minor": str(order.total_minor)}) \
        if created is not None else ctx.audit.event("shop.AuthorizePayment", order.name,
                                                    subject=f"users/{order.buyer}",
                                                    attributes={"amount_minor": str(order.total_minor)})

    def authorized(unit: Unit) -> Order:
        payment = replace(order.payment, state=PaymentState.AUTHORIZED, reference=authorization.reference,
                          authorized_minor=order.total_minor, authorization_expire_time=authorization.expire_time)
        moved = order.moved_to(OrderState.RESERVED, unit.now, payment=payment)
        if not unit.save_order(moved, was=OrderState.CREATED):
            current = unit.order(order.name)  # the sweep or a cancel got there first; it voided the authorisation
            assert current is not None
            return current
        unit.audit(event)
        if moved.affiliate_visitor_id:
            unit.deliver("affiliate.attribute_order", _attribution(moved), traced_by=event)
        return moved

    result = await ctx.store.run(authorized)
    if result.state is OrderState.CANCELLED:
        await provider.void(order.name)
    return result


def _attribution(order: Order) -> dict[str, object]:
    return {"order": order.name, "merchant": f"merchants/{order.merchant}", "visitor_id": order.affiliate_visitor_id,
            "currency_code": order.currency_code, "order_time_us": int(order.create_time.timestamp() * 1_000_000),
            "lines": [[line.product, line.total_minor - line.tax_minor] for line in order.lines]}


def _order_event(order: Order, kind: str, refunded_paid_minor: int = 0, key: str = "") -> dict[str, object]:
    return {"order": order.name, "type": kind, "refunded_paid_minor": refunded_paid_minor,
            "event_time_us": int(order.update_time.timestamp() * 1_000_000), "key": key or kind}


async def compensate(ctx: ShopContext, name: str, reason: CancelReason) -> Order:
    """Undo a checkout or an unpaid order: void the authorisation, release the stock, cancel.
    Safe to run twice and after any crash; a payment the provider already captured completes
    the order instead (PAID), so money never stays without its order."""
    order = await ctx.store.read(lambda unit: unit.order(name))
    assert order is not None
    if order.state not in (OrderState.CREATED, OrderState.RESERVED):
        return order
    if order.state is OrderState.RESERVED and order.payment.state is PaymentState.AUTHORIZED:
        def intend(unit: Unit) -> None:
            current = unit.order(name)
            if current is not None and current.payment.state is PaymentState.AUTHORIZED:
                unit.save_order(replace(current, payment=replace(current.payment, state=PaymentState.VOIDING),
                                        update_time=unit.now), was=current.state)

        await ctx.store.run(intend)
    state = await _provider(ctx, order.payment.provider).void(name)
    if state is PaymentState.CAPTURED:
        return await _record_capture(ctx, order)
    event = ctx.audit.event("shop.CancelOrder", name, subject=f"users/{order.buyer}", attributes={"reason": reason.value})

    def cancel(unit: Unit) -> Order:
        current = unit.order(name)
        assert current is not None
        if current.state not in (OrderState.CREATED, OrderState.RESERVED):
            return current
        declined = reason is CancelReason.PAYMENT_DECLINED
        payment = replace(current.payment, state=PaymentState.DECLINED if declined else PaymentState.VOIDED)
        moved = current.moved_to(OrderState.CANCELLED, unit.now, payment=payment, cancel_reason=reason)
        unit.release(merged_needs(current.stock))
        unit.set_reservation_state(current.reservation, ReservationState.RELEASED)
        unit.save_order(moved, was=current.state)
        unit.audit(event)
        if current.state is OrderState.RESERVED and current.affiliate_visitor_id:
            unit.deliver("affiliate.order_event", _order_event(moved, "CANCELLED"), traced_by=event)
        return moved

    return await ctx.store.run(cancel)


def order_not_found(name: str) -> NotFound:
    return NotFound(f"no order {name}", resource_name=name, reason="ORDER_NOT_FOUND")


def visible_order(caller: Caller, order: Order | None, name: str) -> Order:
    if order is None or not (caller.staff or caller.user == order.buyer
                             or (caller.merchant and caller.user == order.merchant)):
        raise order_not_found(name)
    return order


async def _claimed(ctx: ShopContext, caller: Caller, request_id: str, kind: str, name: str,
                   print_: str) -> tuple[Order, bool]:
    """The order, and whether this request id already did its work (a retry)."""
    def look(unit: Unit) -> tuple[Order | None, bool]:
        return unit.order(name), unit.claim(request_id, kind, print_) is not None

    order, done = await ctx.store.read(look)
    return visible_order(caller, order, name), done


async def capture_order(ctx: ShopContext, caller: Caller, request_id: str, name: str) -> Order:
    print_ = fingerprint({"name": name})
    order, done = await _claimed(ctx, caller, request_id, "CaptureOrder", name, print_)
    if done or order.state in (OrderState.PAID, OrderState.FULFILLED):
        return order
    if order.state is not OrderState.RESERVED:
        order.moved_to(OrderState.PAID, order.update_time)  # raises ORDER_STATE_CONFLICT
    now = ctx.clock()
    expiry = order.payment.authorization_expire_time
    if now >= order.reservation_expire_time or (expiry is not None and now >= expiry):
        await compensate(ctx, name, CancelReason.EXPIRED)
        raise FailedPrecondition(f"{name}'s authorisation or reservation lapsed; it is cancelled",
                                 reason="AUTHORIZATION_EXPIRED", metadata={"order": name})
    if order.parental_consent_required:
        consent = await ctx.store.read(lambda unit: unit.parental_consent(f"users/{order.buyer}"))
        if not consent:
            raise FailedPrecondition("the order exceeds a minor's caps and no parental consent is on record",
                                     reason="PARENTAL_CONSENT_REQUIRED", metadata={"order": name})
    def intend(unit: Unit) -> None:
        current = unit.order(name)
        if current is not None and current.state is OrderState.RESERVED:
            unit.save_order(replace(current, payment=replace(current.payment, state=PaymentState.CAPTURING),
                                    update_time=unit.now), was=current.state)

    await ctx.store.run(intend)
    return await finish_capture(ctx, order, request_id=request_id, print_=print_)


async def finish_capture(ctx: ShopContext, order: Order, *, request_id: str = "", print_: str = "") -> Order:
    """Capture at the provider (again, after a crash: it is idempotent) and record it; a capture
    the provider refuses (the authorisation lapsed) cancels the order instead."""
    state = await _provider(ctx, order.payment.provider).capture(order.name, order.total_minor)
    if state is not PaymentState.CAPTURED:
        await compensate(ctx, order.name, CancelReason.EXPIRED)
        raise FailedPrecondition(f"{order.name}'s authorisation lapsed; it is cancelled",
                                 reason="AUTHORIZATION_EXPIRED", metadata={"order": order.name})
    return await _record_capture(ctx, order, request_id=request_id, print_=print_)


async def _record_capture(ctx: ShopContext, order: Order, *, request_id: str = "", print_: str = "") -> Order:
    event = ctx.audit.event("shop.CaptureOrder", order.name, subject=f"users/{order.buyer}",
                            attributes={"amount_minor": str(order.total_minor)})

    def captured(unit: Unit) -> Order:
        current = unit.order(order.name)
        assert current is not None
        if request_id:
            unit.remember(request_id, "CaptureOrder", print_, order.name)
        if current.state is not OrderState.RESERVED:
            return current
        payment = replace(current.payment, state=PaymentState.CAPTURED, captured_minor=current.total_minor)
        moved = current.moved_to(OrderState.PAID, unit.now, payment=payment)
        unit.sell(merged_needs(current.stock))
        unit.set_reservation_state(current.reservation, ReservationState.COMMITTED)
        if current.live:
            for line in current.lines:
                unit.add_pin_sales(current.live, line.product, line.quantity)
        unit.save_order(moved, was=current.state)
        unit.audit(event)
        return moved

    return await ctx.store.run(captured)


async def fulfill_order(ctx: ShopContext, caller: Caller, request_id: str, name: str,
                        fulfillment: Fulfillment) -> Order:
    print_ = fingerprint({"name": name, "carrier": fulfillment.carrier, "tracking": fulfillment.tracking_number})
    event = ctx.audit.event("shop.FulfillOrder", name, attributes={"carrier": fulfillment.carrier})

    def work(unit: Unit) -> Order:
        order = visible_order(caller, unit.order(name), name)
        if not (caller.merchant and caller.user == order.merchant):
            raise PermissionDenied(f"only merchant {order.merchant} fulfils {name}", reason="NOT_ORDER_MERCHANT")
        if unit.claim(request_id, "FulfillOrder", print_) is not None:
            return order
        moved = order.moved_to(OrderState.FULFILLED, unit.now, fulfillment=fulfillment)
        unit.save_order(moved, was=order.state)
        unit.remember(request_id, "FulfillOrder", print_, name)
        unit.audit(event)
        if order.affiliate_visitor_id:
            unit.deliver("affiliate.order_event", _order_event(moved, "FULFILLED"), traced_by=event)
        return moved

    return await ctx.store.run(work)


async def cancel_order(ctx: ShopContext, caller: Caller, request_id: str, name: str, reason: CancelReason) -> Order:
    print_ = fingerprint({"name": name, "reason": reason.value})
    order, done = await _claimed(ctx, caller, request_id, "CancelOrder", name, print_)
    if done:
        return order
    if order.state not in (OrderState.CREATED, OrderState.RESERVED):
        order.moved_to(OrderState.CANCELLED, order.update_time)  # raises ORDER_STATE_CONFLICT
    cancelled = await compensate(ctx, name, reason)
    if cancelled.state is not OrderState.CANCELLED:
        cancelled.moved_to(OrderState.CANCELLED, cancelled.update_time)
    await ctx.store.run(lambda unit: unit.remember(request_id, "CancelOrder", print_, name))
    return cancelled


@dataclass(frozen=True)
class RefundRequest:
    request_id: str
    name: str
    items: tuple[tuple[str, str, int], ...]
    reason: str
    restock: bool


async def refund_order(ctx: ShopContext, caller: Caller, command: RefundRequest) -> tuple[Order, Refund]:
    """A refund intent first, with the units it takes (so two refunds cannot both take the last
    one), then the provider, then the order; the sweep finishes an intent a crash left."""
    print_ = fingerprint({"name": command.name, "items": [list(i) for i in command.items], "reason": command.reason,
                          "restock": command.restock})
    found = visible_order(caller, await ctx.store.read(lambda unit: unit.order(command.name)), command.name)
    if not (caller.staff or (caller.merchant and caller.user == found.merchant)):
        raise PermissionDenied(f"only merchant {found.merchant} refunds {command.name}", reason="NOT_ORDER_MERCHANT")

    def plan(unit: Unit) -> tuple[Order, Refund, bool]:
        order = visible_order(caller, unit.order(command.name), command.name)
        earlier = unit.claim(command.request_id, "RefundOrder", print_)
        done = next((r for r in order.refunds if r.request_id == command.request_id), None)
        if done is not None:
            return order, done, True
        pending = unit.refund_intents(order.name)
        if earlier is not None:
            return order, next(r for r, _ in pending if r.request_id == command.request_id), False
        if order.state not in (OrderState.PAID, OrderState.FULFILLED):
            order.moved_to(OrderState.REFUNDED, unit.now)
        taken = _with_pending(order, [r for r, _ in pending])
        chosen = refund_lines(taken, list(command.items))
        amount = sum(taken.lines[i].paid_for(taken.lines[i].refunded_quantity + units)
                     - taken.lines[i].paid_for(taken.lines[i].refunded_quantity) for i, units in chosen)
        refund = Refund(command.request_id, tuple((order.lines[i].product, order.lines[i].variant, units)
                                                  for i, units in chosen), amount, command.reason, unit.now)
        unit.record_refund_intent(order.name, refund, command.restock)
        unit.remember(command.request_id, "RefundOrder", print_, command.name)
        return order, refund, False

    order, refund, done = await ctx.store.run(plan)
    if done:
        return order, refund
    return await finish_refund(ctx, order.name, refund, command.restock), refund


def _with_pending(order: Order, pending: list[Refund]) -> Order:
    """The order as if its pending refunds were applied: what is left to refund."""
    lines = list(order.lines)
    for refund in pending:
        for product, variant, units in refund.items:
            index = next(i for i, line in enumerate(lines) if line.product == product and line.variant == variant)
            lines[index] = replace(lines[index], refunded_quantity=lines[index].refunded_quantity + units)
    return replace(order, lines=tuple(lines))


async def finish_refund(ctx: ShopContext, name: str, refund: Refund, restock: bool) -> Order:
    """Refund at the provider (idempotent by the refund's request id) and apply it to the order."""
    order = await ctx.store.read(lambda unit: unit.order(name))
    assert order is not None
    await _provider(ctx, order.payment.provider).refund(name, refund.request_id, refund.amount_minor)
    event = ctx.audit.event("shop.RefundOrder", name, subject=f"users/{order.buyer}",
                            attributes={"amount_minor": str(refund.amount_minor), "restock": str(restock)})

    def apply(unit: Unit) -> Order:
        current = unit.order(name)
        assert current is not None
        unit.drop_refund_intent(refund.request_id)
        if any(r.request_id == refund.request_id for r in current.refunds):
            return current
        lines = list(current.lines)
        paid_refunded = 0
        for product, variant, units in refund.items:
            index = next(i for i, line in enumerate(lines) if line.product == product and line.variant == variant)
            line = lines[index]
            share = line.paid_for(line.refunded_quantity + units) - line.paid_for(line.refunded_quantity)
            paid_refunded += share - tax_included(share, line.vat_rate_bps)
            lines[index] = replace(line, refunded_quantity=line.refunded_quantity + units)
            if restock:
                unit.restock(merged_needs(line.stock_of(units)))
        refunded = current.payment.refunded_minor + refund.amount_minor
        whole = all(line.refunded_quantity == line.quantity for line in lines)
        payment = replace(current.payment, refunded_minor=refunded,
                          state=PaymentState.REFUNDED if whole else PaymentState.PARTIALLY_REFUNDED)
        changes: dict[str, object] = {"lines": tuple(lines), "payment": payment,
                                      "refunds": (*current.refunds, refund)}
        moved = current.moved_to(OrderState.REFUNDED, unit.now, **changes) if whole \
            else replace(current, update_time=unit.now, **changes)  # type: ignore[arg-type]
        unit.save_order(moved, was=current.state)
        unit.audit(event)
        if moved.affiliate_visitor_id:
            unit.deliver("affiliate.order_event", _order_event(moved, "REFUNDED", paid_refunded, refund.request_id),
                         traced_by=event)
        return moved

    return await ctx.store.run(apply)

"""Shop domain values to and from limelight.shop.v1 messages: names, enums, timestamps."""

from __future__ import annotations

import datetime as dt

from limelight.shop.v1 import catalog_pb2, inventory_pb2, live_pins_pb2, orders_pb2

from libs.clock import Clock
from libs.errors import InvalidArgument
from libs.timestamps import from_timestamp, to_timestamp
from services.shop.model import (
    INVENTORY,
    MERCHANT,
    PRODUCT,
    VARIANT,
    CancelReason,
    Component,
    Fulfillment,
    LivePin,
    Order,
    OrderState,
    PaymentState,
    Product,
    ProductState,
    ProductType,
    Reservation,
    SpendingLimits,
    Stock,
    Variant,
)
from services.shop.usecases.ports import new_id

PRODUCT_TYPES = {ProductType.PHYSICAL: catalog_pb2.PRODUCT_TYPE_PHYSICAL, ProductType.DIGITAL: catalog_pb2.PRODUCT_TYPE_DIGITAL,
                 ProductType.SUBSCRIPTION: catalog_pb2.PRODUCT_TYPE_SUBSCRIPTION,
                 ProductType.BUNDLE: catalog_pb2.PRODUCT_TYPE_BUNDLE}
PRODUCT_STATES = {ProductState.DRAFT: catalog_pb2.PRODUCT_STATE_DRAFT, ProductState.ACTIVE: catalog_pb2.PRODUCT_STATE_ACTIVE,
                  ProductState.ARCHIVED: catalog_pb2.PRODUCT_STATE_ARCHIVED}
ORDER_STATES = {OrderState.CREATED: orders_pb2.ORDER_STATE_CREATED, OrderState.RESERVED: orders_pb2.ORDER_STATE_RESERVED,
                OrderState.PAID: orders_pb2.ORDER_STATE_PAID, OrderState.FULFILLED: orders_pb2.ORDER_STATE_FULFILLED,
                OrderState.CANCELLED: orders_pb2.ORDER_STATE_CANCELLED, OrderState.REFUNDED: orders_pb2.ORDER_STATE_REFUNDED}
PAYMENT_STATES = {PaymentState.PENDING: orders_pb2.PAYMENT_STATE_UNSPECIFIED,
                  PaymentState.AUTHORIZED: orders_pb2.PAYMENT_STATE_AUTHORIZED,
                  PaymentState.CAPTURING: orders_pb2.PAYMENT_STATE_AUTHORIZED,
                  PaymentState.VOIDING: orders_pb2.PAYMENT_STATE_AUTHORIZED,
                  PaymentState.CAPTURED: orders_pb2.PAYMENT_STATE_CAPTURED,
                  PaymentState.VOIDED: orders_pb2.PAYMENT_STATE_VOIDED,
                  PaymentState.PARTIALLY_REFUNDED: orders_pb2.PAYMENT_STATE_PARTIALLY_REFUNDED,
                  PaymentState.REFUNDED: orders_pb2.PAYMENT_STATE_REFUNDED,
                  PaymentState.DECLINED: orders_pb2.PAYMENT_STATE_DECLINED}
CANCEL_REASONS = {CancelReason.NONE: orders_pb2.CANCEL_REASON_UNSPECIFIED,
                  CancelReason.BUYER_REQUESTED: orders_pb2.CANCEL_REASON_BUYER_REQUESTED,
                  CancelReason.MERCHANT_UNABLE_TO_FULFIL: orders_pb2.CANCEL_REASON_MERCHANT_UNABLE_TO_FULFIL,
                  CancelReason.EXPIRED: orders_pb2.CANCEL_REASON_EXPIRED,
                  CancelReason.FRAUD_SUSPECTED: orders_pb2.CANCEL_REASON_FRAUD_SUSPECTED,
                  # A declined checkout is cancelled before anything was charged; the payment says why.
                  CancelReason.PAYMENT_DECLINED: orders_pb2.CANCEL_REASON_UNSPECIFIED}
RESERVATION_STATES = {"ACTIVE": inventory_pb2.RESERVATION_STATE_ACTIVE,
                      "COMMITTED": inventory_pb2.RESERVATION_STATE_COMMITTED,
                      "RELEASED": inventory_pb2.RESERVATION_STATE_RELEASED,
                      "EXPIRED": inventory_pb2.RESERVATION_STATE_EXPIRED}
ADJUSTMENT_REASONS = {inventory_pb2.ADJUSTMENT_REASON_RESTOCK: "RESTOCK",
                      inventory_pb2.ADJUSTMENT_REASON_COUNT_CORRECTION: "COUNT_CORRECTION",
                      inventory_pb2.ADJUSTMENT_REASON_DAMAGED_OR_LOST: "DAMAGED_OR_LOST",
                      inventory_pb2.ADJUSTMENT_REASON_RETURN_RESTOCKED: "RETURN_RESTOCKED"}


def _inverse(table: dict[object, int]) -> dict[int, object]:
    return {value: key for key, value in table.items()}


def product_state_in(value: int) -> ProductState | None:
    return _inverse(PRODUCT_STATES).get(value)  # type: ignore[arg-type, return-value]


def order_state_in(value: int) -> OrderState | None:
    return _inverse(ORDER_STATES).get(value)  # type: ignore[arg-type, return-value]


def cancel_reason_in(value: int) -> CancelReason:
    return _inverse(CANCEL_REASONS)[value]  # type: ignore[arg-type, return-value]


def _stamp(moment: dt.datetime | None) -> object:
    return to_timestamp(moment) if moment is not None else None


def product_in(request: catalog_pb2.CreateProductRequest, clock: Clock) -> Product:
    merchant = MERCHANT.parse(request.parent, field="parent")["merchant"]
    given = request.product
    now = clock()
    currency = given.currency_code
    if not currency:
        raise InvalidArgument.for_field("product.currency_code", "required: an ISO 4217 code")
    return Product(
        merchant=merchant, product_id=request.product_id or new_id(), title=given.title,
        description=given.description, price_minor=given.price_minor, currency_code=currency,
        type=_inverse(PRODUCT_TYPES)[given.type],  # type: ignore[arg-type]
        minimum_age=given.minimum_age, state=product_state_in(given.state) or ProductState.DRAFT,
        vat_rate_bps=given.vat_rate_bps, image_uris=tuple(given.image_uris),
        variants=tuple(Variant(v.variant_id, v.title, tuple(sorted(v.attributes.items())), v.price_minor)
                       for v in given.variants),
        components=tuple(Component(c.variant, c.quantity) for c in given.bundle_components),
        create_time=now, update_time=now)


UPDATABLE = ("title", "description", "price_minor", "minimum_age", "state", "vat_rate_bps", "image_uris")


def product_changes(request: catalog_pb2.UpdateProductRequest) -> dict[str, object]:
    given = request.product
    paths = list(request.update_mask.paths) or list(UPDATABLE)
    changes: dict[str, object] = {}
    for path in paths:
        if path == "state":
            state = product_state_in(given.state)
            if state is None and request.update_mask.paths:
                raise InvalidArgument.for_field("product.state", "a product's state cannot be unset")
            if state is not None:  # a whole-product update without a state keeps it
                changes["state"] = state
        elif path == "image_uris":
            changes["image_uris"] = tuple(given.image_uris)
        else:
            changes[path] = getattr(given, path)
    return changes


def product_out(product: Product) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        name=product.name, title=product.title, description=product.description, price_minor=product.price_minor,
        currency_code=product.currency_code, type=PRODUCT_TYPES[product.type], minimum_age=product.minimum_age,
        state=PRODUCT_STATES[product.state], create_time=to_timestamp(product.create_time),
        update_time=to_timestamp(product.update_time), vat_rate_bps=product.vat_rate_bps,
        image_uris=list(product.image_uris),
        variants=[catalog_pb2.Variant(variant_id=v.variant_id, title=v.title, attributes=dict(v.attributes),
                                      price_minor=v.price_minor, name=product.variant_name(v.variant_id))
                  for v in product.variants],
        bundle_components=[catalog_pb2.BundleComponent(variant=c.variant, quantity=c.quantity)
                           for c in product.components])


def inventory_out(stock: Stock) -> inventory_pb2.Inventory:
    ids = VARIANT.parse(stock.variant)
    return inventory_pb2.Inventory(name=INVENTORY.format(**ids), on_hand=stock.on_hand, reserved=stock.reserved,
                                   sold=stock.sold, available=stock.available,
                                   update_time=to_timestamp(stock.update_time))


def inventory_in(name: str) -> tuple[str, str, str]:
    """(variant name, merchant, product name) of an inventory name."""
    ids = INVENTORY.parse(name, field="name")
    return VARIANT.format(**ids), ids["merchant"], PRODUCT.format(merchant=ids["merchant"], product=ids["product"])


def reservation_out(reservation: Reservation) -> inventory_pb2.Reservation:
    return inventory_pb2.Reservation(
        name=reservation.name, items=[inventory_pb2.ReservationItem(variant=v, quantity=q) for v, q in reservation.items],
        state=RESERVATION_STATES[reservation.state.value], holder=reservation.holder,
        request_id=reservation.request_id, create_time=to_timestamp(reservation.create_time),
        expire_time=to_timestamp(reservation.expire_time))


def order_out(order: Order) -> orders_pb2.Order:
    payment = order.payment
    message = orders_pb2.Order(
        name=order.name, merchant=f"merchants/{order.merchant}", state=ORDER_STATES[order.state],
        lines=[orders_pb2.OrderLine(product=line.product, title=line.title, quantity=line.quantity,
                                    unit_price_minor=line.unit_price_minor, tax_minor=line.tax_minor,
                                    total_minor=line.total_minor, refunded_quantity=line.refunded_quantity,
                                    reservation=order.reservation, variant=line.variant,
                                    vat_rate_bps=line.vat_rate_bps, flash_price=line.flash_price)
               for line in order.lines],
        currency_code=order.currency_code, subtotal_minor=order.total_minor, tax_minor=order.tax_minor,
        total_minor=order.total_minor,
        payment=orders_pb2.Payment(state=PAYMENT_STATES[payment.state], provider=payment.provider,
                                   authorization_reference=payment.reference, authorized_minor=payment.authorized_minor,
                                   captured_minor=payment.captured_minor, refunded_minor=payment.refunded_minor),
        refunds=[orders_pb2.Refund(items=[orders_pb2.CheckoutItem(product=p, variant=v, quantity=q) for p, v, q in r.items],
                                   amount_minor=r.amount_minor, reason=r.reason, request_id=r.request_id,
                                   create_time=to_timestamp(r.create_time)) for r in order.refunds],
        cancel_reason=CANCEL_REASONS[order.cancel_reason], live=order.live,
        affiliate_visitor_id=order.affiliate_visitor_id, request_id=order.request_id,
        create_time=to_timestamp(order.create_time), update_time=to_timestamp(order.update_time),
        reservation_expire_time=to_timestamp(order.reservation_expire_time), buyer=f"users/{order.buyer}",
        shipping_address=order.shipping_address, recipient_name=order.recipient_name,
        parental_consent_required=order.parental_consent_required)
    if payment.authorization_expire_time is not None:
        message.payment.authorization_expire_time.CopyFrom(to_timestamp(payment.authorization_expire_time))
    if order.fulfillment is not None:
        message.fulfillment.CopyFrom(orders_pb2.Fulfillment(carrier=order.fulfillment.carrier,
                                                            tracking_number=order.fulfillment.tracking_number))
    return message


def fulfillment_in(message: orders_pb2.Fulfillment) -> Fulfillment:
    return Fulfillment(message.carrier, message.tracking_number)


def pin_out(pin: LivePin, now: dt.datetime) -> live_pins_pb2.LivePin:
    message = live_pins_pb2.LivePin(name=pin.name, product=pin.product, active=pin.active_at(now),
                                    disclosure_label=pin.disclosure_label, units_sold=pin.units_sold,
                                    pin_time=to_timestamp(pin.pin_time), flash_price_minor=pin.flash_price_minor,
                                    currency_code=pin.currency_code, ad=pin.ad)
    if pin.unpin_time is not None:
        message.unpin_time.CopyFrom(to_timestamp(pin.unpin_time))
    if pin.end_time is not None:
        message.end_time.CopyFrom(to_timestamp(pin.end_time))
    return message


def end_time_in(request: live_pins_pb2.PinProductRequest) -> dt.datetime | None:
    return from_timestamp(request.end_time, field="end_time") if request.HasField("end_time") else None


def limits_out(limits: SpendingLimits) -> orders_pb2.SpendingLimits:
    return orders_pb2.SpendingLimits(
        name=f"users/{limits.user}/spendingLimits", minor=limits.minor, may_purchase=limits.may_purchase,
        parental_consent=limits.parental_consent, per_transaction_cap_minor=limits.per_transaction_cap_minor,
        monthly_cap_minor=limits.monthly_cap_minor, spent_this_month_minor=limits.spent_this_month_minor,
        currency_code=limits.currency_code, subscriptions_allowed=not limits.minor, credit_allowed=not limits.minor)

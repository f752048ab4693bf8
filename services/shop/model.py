"""The shop's domain: products and their variants, stock, reservations, orders and their
state machine, pricing with VAT, LIVE pins with flash prices, and the purchase rules for
minors (§§ 104-113 BGB). Pure: no I/O, time passed in.

Invariants stated here and held by the store:
- stock per variant: `reserved + sold <= on_hand`, every count >= 0 (a CHECK constraint;
  every change a conditional UPDATE in one transaction);
- an order moves only along `TRANSITIONS`; a refund never exceeds what was bought;
- amounts are integers in minor units of one currency per order.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property

from libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from libs.resource_names import ResourcePattern

MERCHANT = ResourcePattern("merchants/{merchant}")
PRODUCT = ResourcePattern("merchants/{merchant}/products/{product}")
VARIANT = ResourcePattern("merchants/{merchant}/products/{product}/variants/{variant}")
INVENTORY = ResourcePattern("merchants/{merchant}/products/{product}/variants/{variant}/inventory")
RESERVATION = ResourcePattern("merchants/{merchant}/reservations/{reservation}")
USER = ResourcePattern("users/{user}")
ORDER = ResourcePattern("users/{user}/orders/{order}")
SPENDING_LIMITS = ResourcePattern("users/{user}/spendingLimits")
LIVE = ResourcePattern("creators/{creator}/lives/{live}")
PIN = ResourcePattern("creators/{creator}/lives/{live}/pins/{pin}")

DEFAULT_VARIANT = "default"
# Every pinned product is advertising: the label shown when the disclosure engine cannot be
# asked (§ 5a (4) UWG, § 6 DDG: "Werbung" in front of the content).
DEFAULT_DISCLOSURE_LABEL = "Werbung"


class ProductType(enum.StrEnum):
    PHYSICAL = "PHYSICAL"
    DIGITAL = "DIGITAL"
    SUBSCRIPTION = "SUBSCRIPTION"
    BUNDLE = "BUNDLE"


class ProductState(enum.StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"


@dataclass(frozen=True)
class Variant:
    variant_id: str
    title: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    price_minor: int = 0  # 0: the product's price


@dataclass(frozen=True)
class Component:
    """One variant (by name) a bundle consumes per unit."""

    variant: str
    quantity: int


@dataclass(frozen=True)
class Product:
    merchant: str
    product_id: str
    title: str
    description: str
    price_minor: int
    currency_code: str
    type: ProductType
    minimum_age: int
    state: ProductState
    vat_rate_bps: int
    image_uris: tuple[str, ...]
    variants: tuple[Variant, ...]
    components: tuple[Component, ...]
    create_time: dt.datetime
    update_time: dt.datetime

    @cached_property  # formatted (and checked) once per value: names are on every hot path
    def name(self) -> str:
        return PRODUCT.format(merchant=self.merchant, product=self.product_id)

    def variant_name(self, variant_id: str) -> str:
        return VARIANT.format(merchant=self.merchant, product=self.product_id, variant=variant_id)

    def variant(self, variant_id: str, *, field_path: str) -> Variant | None:
        """The variant a buyer names: None for a bundle; the only one when none is named."""
        if self.type is ProductType.BUNDLE:
            if variant_id:
                raise InvalidArgument.for_field(field_path, "a bundle has no variants; leave it empty")
            return None
        if not variant_id:
            if len(self.variants) != 1:
                raise InvalidArgument.for_field(
                    field_path, f"{self.name} has {len(self.variants)} variants: name one", reason="VARIANT_REQUIRED")
            return self.variants[0]
        for variant in self.variants:
            if variant.variant_id == variant_id:
                return variant
        raise NotFound(f"{self.name} has no variant {variant_id!r}", resource_name=self.variant_name(variant_id),
                       reason="VARIANT_NOT_FOUND")

    def unit_price(self, variant: Variant | None) -> int:
        return variant.price_minor if variant is not None and variant.price_minor else self.price_minor

    def stock_needs(self, variant: Variant | None, quantity: int) -> tuple[tuple[str, int], ...]:
        """The variants (by name) and units `quantity` of this product takes from stock."""
        if variant is None:
            return tuple((component.variant, component.quantity * quantity) for component in self.components)
        return ((self.variant_name(variant.variant_id), quantity),)

    def require_on_sale(self) -> None:
        if self.state is not ProductState.ACTIVE:
            raise FailedPrecondition(f"{self.name} is not on sale ({self.state.value})", reason="PRODUCT_NOT_ACTIVE",
                                     metadata={"product": self.name, "state": self.state.value})


def check_new_product(product: Product) -> None:
    """What protovalidate cannot say about a new product."""
    ids = [variant.variant_id for variant in product.variants]
    if len(set(ids)) != len(ids):
        raise InvalidArgument.for_field("product.variants", "two variants share an id")
    if product.type is ProductType.BUNDLE:
        if not product.components:
            raise InvalidArgument.for_field("product.bundle_components", "a bundle needs at least one component")
        if product.variants:
            raise InvalidArgument.for_field("product.variants", "a bundle has no variants of its own")
        for index, component in enumerate(product.components):
            if VARIANT.parse(component.variant, field=f"product.bundle_components[{index}].variant")["merchant"] \
                    != product.merchant:
                raise InvalidArgument.for_field(f"product.bundle_components[{index}].variant",
                                                "a bundle takes variants of its own merchant only")
    elif product.components:
        raise InvalidArgument.for_field("product.bundle_components", "only a bundle has components")


def tax_included(total_minor: int, vat_rate_bps: int) -> int:
    """The VAT inside a tax-inclusive amount, rounded half up to the minor unit."""
    divisor = 10_000 + vat_rate_bps
    return (total_minor * vat_rate_bps * 2 + divisor) // (2 * divisor)


# -- stock and reservations -------------------------------------------------------------------


@dataclass(frozen=True)
class Stock:
    variant: str
    on_hand: int
    reserved: int
    sold: int
    update_time: dt.datetime

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.sold


class ReservationState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True)
class Reservation:
    merchant: str
    reservation_id: str
    holder: str
    request_id: str
    items: tuple[tuple[str, int], ...]
    state: ReservationState
    create_time: dt.datetime
    expire_time: dt.datetime

    @cached_property  # formatted (and checked) once per value: names are on every hot path
    def name(self) -> str:
        return RESERVATION.format(merchant=self.merchant, reservation=self.reservation_id)


class OutOfStock(FailedPrecondition):
    default_reason = "OUT_OF_STOCK"

    def __init__(self, variant: str, wanted: int, available: int) -> None:
        super().__init__(f"{variant} has {available} available, {wanted} wanted",
                         metadata={"variant": variant, "available": str(available), "wanted": str(wanted)})


def merged_needs(needs: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """One entry per variant, in name order: every transaction takes rows in the same order."""
    totals: dict[str, int] = {}
    for variant, quantity in needs:
        totals[variant] = totals.get(variant, 0) + quantity
    return tuple(sorted(totals.items()))


# -- orders -----------------------------------------------------------------------------------


class OrderState(enum.StrEnum):
    CREATED = "CREATED"
    RESERVED = "RESERVED"
    PAID = "PAID"
    FULFILLED = "FULFILLED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.CREATED: frozenset({OrderState.RESERVED, OrderState.CANCELLED}),
    OrderState.RESERVED: frozenset({OrderState.PAID, OrderState.CANCELLED}),
    OrderState.PAID: frozenset({OrderState.FULFILLED, OrderState.REFUNDED}),
    OrderState.FULFILLED: frozenset({OrderState.REFUNDED}),
    OrderState.CANCELLED: frozenset(),
    OrderState.REFUNDED: frozenset(),
}


class PaymentState(enum.StrEnum):
    PENDING = "PENDING"  # being authorised (the order is CREATED)
    AUTHORIZED = "AUTHORIZED"
    CAPTURING = "CAPTURING"  # authorised, and a capture was asked of the provider: the sweep finishes it
    VOIDING = "VOIDING"  # authorised, and a void was asked of the provider: the sweep finishes it
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    DECLINED = "DECLINED"


class CancelReason(enum.StrEnum):
    NONE = ""
    BUYER_REQUESTED = "BUYER_REQUESTED"
    MERCHANT_UNABLE_TO_FULFIL = "MERCHANT_UNABLE_TO_FULFIL"
    EXPIRED = "EXPIRED"
    FRAUD_SUSPECTED = "FRAUD_SUSPECTED"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"


class Funding(enum.StrEnum):
    DEBIT = "DEBIT"
    PREPAID = "PREPAID"
    CREDIT = "CREDIT"
    POST_PAID = "POST_PAID"


@dataclass(frozen=True)
class OrderLine:
    product: str
    variant: str
    title: str
    quantity: int
    unit_price_minor: int
    tax_minor: int
    total_minor: int
    vat_rate_bps: int
    flash_price: bool
    # What one unit takes from stock, by variant name.
    needs: tuple[tuple[str, int], ...]
    refunded_quantity: int = 0

    def paid_for(self, units: int) -> int:
        """What `units` of this line cost, pro rata, so that all units cost exactly the total."""
        return self.total_minor * units // self.quantity

    def stock_of(self, units: int) -> list[tuple[str, int]]:
        return [(variant, per_unit * units) for variant, per_unit in self.needs]


@dataclass(frozen=True)
class Payment:
    state: PaymentState
    provider: str
    funding: Funding
    reference: str = ""
    authorized_minor: int = 0
    captured_minor: int = 0
    refunded_minor: int = 0
    authorization_expire_time: dt.datetime | None = None


@dataclass(frozen=True)
class Fulfillment:
    carrier: str
    tracking_number: str


@dataclass(frozen=True)
class Refund:
    request_id: str
    items: tuple[tuple[str, str, int], ...]  # (product, variant, units)
    amount_minor: int
    reason: str
    create_time: dt.datetime


@dataclass(frozen=True)
class Order:
    buyer: str  # the user id
    order_id: str
    merchant: str
    state: OrderState
    lines: tuple[OrderLine, ...]
    currency_code: str
    payment: Payment
    reservation: str
    request_id: str
    create_time: dt.datetime
    update_time: dt.datetime
    reservation_expire_time: dt.datetime
    live: str = ""
    affiliate_visitor_id: str = ""
    cancel_reason: CancelReason = CancelReason.NONE
    parental_consent_required: bool = False
    fulfillment: Fulfillment | None = None
    refunds: tuple[Refund, ...] = ()
    shipping_address: str = ""  # opened for the response; sealed in the store
    recipient_name: str = ""
    has_sealed_fields: bool = False  # the store holds sealed shipping details to open

    @cached_property  # formatted (and checked) once per value: names are on every hot path
    def name(self) -> str:
        return ORDER.format(user=self.buyer, order=self.order_id)

    @property
    def total_minor(self) -> int:
        return sum(line.total_minor for line in self.lines)

    @property
    def tax_minor(self) -> int:
        return sum(line.tax_minor for line in self.lines)

    @property
    def stock(self) -> list[tuple[str, int]]:
        return [need for line in self.lines for need in line.stock_of(line.quantity)]

    def moved_to(self, state: OrderState, now: dt.datetime, **changes: object) -> Order:
        """The order after a transition; one not allowed from its state is refused."""
        if state not in TRANSITIONS[self.state]:
            raise FailedPrecondition(f"{self.name} is {self.state.value}; it cannot become {state.value}",
                                     reason="ORDER_STATE_CONFLICT",
                                     metadata={"order": self.name, "state": self.state.value, "wanted": state.value})
        return replace(self, state=state, update_time=now, **changes)  # type: ignore[arg-type]


def fingerprint(parameters: dict[str, object]) -> str:
    """What a request asked for, so that a reused request id with other parameters is caught."""
    return hashlib.sha256(json.dumps(parameters, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RequestIdReused(FailedPrecondition):
    default_reason = "REQUEST_ID_REUSED"

    def __init__(self, request_id: str, kind: str) -> None:
        super().__init__(f"request_id {request_id} was used for a different {kind}",
                         metadata={"request_id": request_id, "field": "request_id", "first_use": kind})


def refund_lines(order: Order, items: list[tuple[str, str, int]]) -> list[tuple[int, int]]:
    """(line index, units) to refund: what `items` names, or every unit not yet refunded."""
    if not items:
        return [(index, line.quantity - line.refunded_quantity) for index, line in enumerate(order.lines)
                if line.quantity > line.refunded_quantity]
    chosen: dict[int, int] = {}
    for position, (product, variant, units) in enumerate(items):
        index = next((i for i, line in enumerate(order.lines)
                      if line.product == product and (not variant or line.variant == variant)), None)
        if index is None:
            raise InvalidArgument.for_field(f"items[{position}].product", f"{product} is not in {order.name}")
        chosen[index] = chosen.get(index, 0) + units
    for index, units in chosen.items():
        line = order.lines[index]
        if line.refunded_quantity + units > line.quantity:
            raise FailedPrecondition(
                f"{line.product}: {line.quantity - line.refunded_quantity} units left to refund, {units} asked",
                reason="REFUND_EXCEEDS_ORDER",
                metadata={"product": line.product, "refundable": str(line.quantity - line.refunded_quantity)})
    return sorted(chosen.items())


# -- LIVE pins --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LivePin:
    creator: str
    live_id: str
    pin_id: str
    product: str
    currency_code: str
    disclosure_label: str
    pin_time: dt.datetime
    flash_price_minor: int = 0
    end_time: dt.datetime | None = None
    unpin_time: dt.datetime | None = None
    units_sold: int = 0
    ad: str = ""

    @cached_property  # formatted (and checked) once per value: names are on every hot path
    def name(self) -> str:
        return PIN.format(creator=self.creator, live=self.live_id, pin=self.pin_id)

    @property
    def live(self) -> str:
        return LIVE.format(creator=self.creator, live=self.live_id)

    def active_at(self, now: dt.datetime) -> bool:
        return self.unpin_time is None and self.pin_time <= now and (self.end_time is None or now < self.end_time)

    def flash_price_at(self, now: dt.datetime) -> int | None:
        """The flash price while the pin is live by `now`, the server's clock; else None."""
        return self.flash_price_minor if self.flash_price_minor and self.active_at(now) else None


def require_live_host(caller_user: str, creator: str, live: str) -> None:
    if caller_user != creator:
        raise PermissionDenied(f"only the host of {live} pins products in it", reason="NOT_LIVE_HOST",
                               metadata={"live": live})


# -- minors (§§ 104-113 BGB) -------------------------------------------------------------------

ADULT_AGE = 18
MIN_CONTRACT_AGE = 7


@dataclass(frozen=True)
class SpendingPolicy:
    """The platform's caps for buyers aged 7 to 17 (published in GetSpendingLimits)."""

    currency_code: str = "EUR"
    per_transaction_cap_minor: int = 5_000
    monthly_cap_minor: int = 10_000


@dataclass(frozen=True)
class SpendingLimits:
    user: str
    minor: bool
    may_purchase: bool
    parental_consent: bool
    per_transaction_cap_minor: int
    monthly_cap_minor: int
    spent_this_month_minor: int
    currency_code: str


@dataclass(frozen=True)
class Purchase:
    """What the minors' rules look at in one checkout."""

    age: int | None
    total_minor: int
    currency_code: str
    funding: Funding
    product_types: frozenset[ProductType] = field(default_factory=frozenset)
    strictest_minimum_age: int = 0


def purchase_rules(purchase: Purchase, *, spent_this_month: int, consent: bool, policy: SpendingPolicy) -> bool:
    """Refuses what the buyer may not buy, each with its own reason; returns True when the order
    exceeds a minor's cap and so needs parental consent on record to be captured."""
    age = purchase.age
    if age is None:
        raise FailedPrecondition("the buyer's age is not known, so no contract can be made", reason="BUYER_AGE_UNKNOWN")
    if age < MIN_CONTRACT_AGE:
        raise FailedPrecondition("a child under 7 cannot make a contract (§ 104 BGB)", reason="BUYER_UNDER_7")
    if age < purchase.strictest_minimum_age:
        raise FailedPrecondition(f"a product is for buyers of {purchase.strictest_minimum_age} and over",
                                 reason="PRODUCT_AGE_RESTRICTED",
                                 metadata={"minimum_age": str(purchase.strictest_minimum_age)})
    if age >= ADULT_AGE:
        return False
    if ProductType.SUBSCRIPTION in purchase.product_types:
        raise FailedPrecondition("minors may not buy subscriptions", reason="SUBSCRIPTION_NOT_ALLOWED_FOR_MINOR")
    if purchase.funding in (Funding.CREDIT, Funding.POST_PAID):
        raise FailedPrecondition("minors may not pay on credit or post-paid", reason="MINOR_CREDIT_NOT_ALLOWED",
                                 metadata={"funding": purchase.funding.value})
    if purchase.currency_code != policy.currency_code:
        raise FailedPrecondition(f"minors' caps are in {policy.currency_code}", reason="CURRENCY_MISMATCH",
                                 metadata={"currency_code": policy.currency_code})
    over_transaction = purchase.total_minor > policy.per_transaction_cap_minor
    over_month = spent_this_month + purchase.total_minor > policy.monthly_cap_minor
    if consent:
        return over_transaction or over_month
    if over_transaction:
        raise FailedPrecondition("the order exceeds a minor's per-transaction cap without parental consent",
                                 reason="MINOR_TRANSACTION_CAP_EXCEEDED",
                                 metadata={"cap_minor": str(policy.per_transaction_cap_minor),
                                           "total_minor": str(purchase.total_minor)})
    if over_month:
        raise FailedPrecondition("the order exceeds a minor's monthly cap without parental consent",
                                 reason="MINOR_MONTHLY_CAP_EXCEEDED",
                                 metadata={"cap_minor": str(policy.monthly_cap_minor),
                                           "spent_minor": str(spent_this_month),
                                           "total_minor": str(purchase.total_minor)})
    return False


def month_start(now: dt.datetime) -> dt.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

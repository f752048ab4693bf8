"""The ports the shop's use cases declare (store.py, payments.py and the clients satisfy them),
the context they run in, and the caller as they see them."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from libs.clock import Clock
from services.shop.model import (
    Funding,
    LivePin,
    Order,
    OrderState,
    PaymentState,
    Product,
    Refund,
    Reservation,
    ReservationState,
    SpendingPolicy,
    Stock,
)

T = TypeVar("T")


class Unit(Protocol):
    """One transaction, as the use cases see it; store.py satisfies it."""

    now: dt.datetime

    def claim(self, request_id: str, kind: str, print_: str) -> str | None: ...
    def remember(self, request_id: str, kind: str, print_: str, result: str) -> None: ...
    def product(self, name: str) -> Product | None: ...
    def insert_product(self, product: Product) -> None: ...
    def save_product(self, product: Product) -> None: ...
    def stock(self, variant: str) -> Stock | None: ...
    def adjust_on_hand(self, variant: str, delta: int, request_id: str) -> Stock: ...
    def reserve(self, needs: Sequence[tuple[str, int]]) -> None: ...
    def release(self, needs: Sequence[tuple[str, int]]) -> None: ...
    def sell(self, needs: Sequence[tuple[str, int]]) -> None: ...
    def restock(self, needs: Sequence[tuple[str, int]]) -> None: ...
    def insert_reservation(self, reservation: Reservation) -> None: ...
    def reservation(self, name: str) -> Reservation | None: ...
    def set_reservation_state(self, name: str, state: ReservationState) -> None: ...
    def expired_reservations(self, limit: int) -> list[Reservation]: ...
    def insert_order(self, order: Order, sealed: tuple[bytes | None, bytes | None]) -> None: ...
    def order(self, name: str) -> Order | None: ...
    def save_order(self, order: Order, *, was: OrderState) -> bool: ...
    def spent_since(self, buyer: str, since: dt.datetime) -> int: ...
    def parental_consent(self, user: str) -> bool: ...
    def record_parental_consent(self, user: str, granted: bool, evidence: str, actor: str, request_id: str) -> None: ...
    def active_pin(self, live: str, product: str) -> LivePin | None: ...
    def insert_pin(self, pin: LivePin) -> None: ...
    def save_pin(self, pin: LivePin) -> None: ...
    def pin(self, name: str) -> LivePin | None: ...
    def add_pin_sales(self, live: str, product: str, units: int) -> None: ...
    def refund_intents(self, order: str) -> list[tuple[Refund, bool]]: ...
    def record_refund_intent(self, order: str, refund: Refund, restock: bool) -> None: ...
    def drop_refund_intent(self, request_id: str) -> None: ...
    def deliver(self, kind: str, payload: dict[str, object], *, traced_by: object) -> None:
        """Queue a call to another service; it continues the trace of the call that built the audit
        event `traced_by` (so affiliate's commission shows in the order's trace)."""
        ...
    def audit(self, event: object) -> None: ...


Work = Callable[[Unit], T]


class Store(Protocol):
    def run(self, work: Work[T], *, refused: object | None = None) -> Awaitable[T]: ...
    def read(self, work: Work[T]) -> Awaitable[T]: ...
    def sweep_candidates(self, *, created_before: dt.datetime, now: dt.datetime,
                         limit: int) -> Awaitable[list[Order]]: ...
    def lost_refunds(self, *, before: dt.datetime, limit: int) -> Awaitable[list[tuple[str, Refund, bool]]]: ...


@dataclass(frozen=True)
class Authorization:
    approved: bool
    reference: str = ""
    expire_time: dt.datetime | None = None
    decline_reason: str = ""


class PaymentProvider(Protocol):
    """A payment provider, idempotent by key: the order's name for an authorisation, a
    refund's request id for a refund. `void` and `capture` answer the payment's state after
    them (a captured payment is not voided; a voided one is not captured)."""

    name: str

    def funding(self, token: str) -> Funding: ...
    async def authorize(self, key: str, token: str, amount_minor: int, currency_code: str) -> Authorization: ...
    async def capture(self, key: str, amount_minor: int) -> PaymentState: ...
    async def void(self, key: str) -> PaymentState: ...
    async def refund(self, key: str, refund_key: str, amount_minor: int) -> None: ...


class LiveSessions(Protocol):
    """Gifts' LIVE sessions: when a running LIVE ends at the latest; None when it is not LIVE
    (NotFound or Unavailable when gifts does not know it or cannot be asked)."""

    async def live_until(self, live: str) -> dt.datetime | None: ...


class Disclosure(Protocol):
    """The disclosure engine's label for a product pinned in a LIVE; None when it cannot answer."""

    async def label(self, live: str, product: str) -> str | None: ...


class AuditEvents(Protocol):
    """Builds an audit event on the caller's task (identity, trace, time), for `Unit.audit`."""

    def event(self, action: str, resource: str, *, subject: str = "",
              attributes: dict[str, str] | None = None) -> object: ...

    def then(self, earlier: object, action: str, *, attributes: dict[str, str] | None = None) -> object:
        """A further event of the same call, about the same resource and subject as `earlier`."""
        ...


class Sealer(Protocol):
    """Personal fields sealed under the subject's data key (`libs.privacy.fields.PersonalData`)."""

    async def seal(self, subject: str, field_name: str, plaintext: str) -> bytes: ...
    async def open(self, subject: str, field_name: str, sealed: bytes | None) -> str | None: ...


@dataclass(frozen=True)
class ShopRules:
    reservation_ttl: dt.timedelta = dt.timedelta(minutes=10)
    checkout_hold: dt.timedelta = dt.timedelta(minutes=15)
    # An order CREATED this long ago has lost its checkout (a crash): the sweep compensates it.
    checkout_grace: dt.timedelta = dt.timedelta(seconds=60)
    spending: SpendingPolicy = SpendingPolicy()


@dataclass
class ShopContext:
    store: Store
    payments: dict[str, PaymentProvider]
    audit: AuditEvents
    clock: Clock
    rules: ShopRules
    sealer: Sealer | None = None
    lives: LiveSessions | None = None
    disclosure: Disclosure | None = None


@dataclass(frozen=True)
class Caller:
    """The verified caller: the user it is or acts for, and what its roles allow."""

    subject: str
    user: str  # the user id, or "" for a service acting for no one
    merchant: bool = False
    service: bool = False
    operator: bool = False
    officer: bool = False
    age: int | None = None

    @property
    def staff(self) -> bool:
        return self.service or self.operator


def new_id() -> str:
    return secrets.token_hex(8)

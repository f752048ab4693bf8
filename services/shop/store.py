"""The shop's store: `<data>/shop/shop.db` (SQLite, WAL, synchronous=FULL) or the PostgreSQL schema
`shop` (`LIMELIGHT_DATABASE_URL`), shared by every replica. The only SQL here.

The stock invariant is the schema's: `CHECK (reserved + sold <= on_hand)` with every count
non-negative, and each move a conditional UPDATE (`... WHERE on_hand - reserved - sold >= ?`)
whose row count says whether it happened, inside the unit of work that needs it, so no
interleaving can oversell and a bundle's components move together or not at all. Request ids
are a table's primary key, written in the same transaction as their effect and its audit event
and outbox entries. Writes run on one group committer; reads on a reader connection.

The same holds across replicas over PostgreSQL: every write transaction takes the store's writer
lock (`libs.storage.database`), so a stock decision and its UPDATE are one step for every replica
at once, and PostgreSQL itself refuses what SQLite refuses (the stock CHECK, UNIQUE request ids,
the append-only parental consents, as a PL/pgSQL trigger).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from libs.audit.events import Outcome
from libs.audit.outbox import DatabaseAuditOutbox, TracedEvent, outbox_migration, write_event
from libs.errors import DomainError, FailedPrecondition
from libs.storage.committer import GroupCommitter
from libs.storage.database import Database, Migration, Row, Transaction, open_database, postgres_types
from libs.timestamps import epoch_us, from_epoch_us
from services.shop.model import (
    CancelReason,
    Component,
    Fulfillment,
    Funding,
    LivePin,
    Order,
    OrderLine,
    OrderState,
    OutOfStock,
    Payment,
    PaymentState,
    Product,
    ProductState,
    ProductType,
    Refund,
    RequestIdReused,
    Reservation,
    ReservationState,
    Stock,
    Variant,
)

T = TypeVar("T")

_TABLES_V1 = """
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE products (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    merchant TEXT NOT NULL,
    product_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    price_minor INTEGER NOT NULL CHECK (price_minor > 0),
    currency_code TEXT NOT NULL CHECK (length(currency_code) = 3),
    type TEXT NOT NULL CHECK (type IN ('PHYSICAL', 'DIGITAL', 'SUBSCRIPTION', 'BUNDLE')),
    minimum_age INTEGER NOT NULL CHECK (minimum_age BETWEEN 0 AND 21),
    state TEXT NOT NULL CHECK (state IN ('DRAFT', 'ACTIVE', 'ARCHIVED')),
    vat_rate_bps INTEGER NOT NULL CHECK (vat_rate_bps BETWEEN 0 AND 10000),
    image_uris TEXT NOT NULL,
    variants TEXT NOT NULL,
    components TEXT NOT NULL,
    create_us INTEGER NOT NULL,
    update_us INTEGER NOT NULL
);
CREATE INDEX products_by_merchant ON products (merchant, seq DESC);
CREATE TABLE stock (
    variant TEXT PRIMARY KEY,
    product TEXT NOT NULL REFERENCES products (name),
    on_hand INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0,
    sold INTEGER NOT NULL DEFAULT 0,
    update_us INTEGER NOT NULL,
    CHECK (on_hand >= 0 AND reserved >= 0 AND sold >= 0 AND reserved + sold <= on_hand)
);
CREATE TABLE stock_adjustments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    variant TEXT NOT NULL REFERENCES stock (variant),
    delta INTEGER NOT NULL CHECK (delta != 0),
    request_id TEXT NOT NULL UNIQUE,
    time_us INTEGER NOT NULL
);
CREATE TABLE reservations (
    name TEXT PRIMARY KEY,
    merchant TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    request_id TEXT NOT NULL,
    items TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'COMMITTED', 'RELEASED', 'EXPIRED')),
    create_us INTEGER NOT NULL,
    expire_us INTEGER NOT NULL
);
CREATE INDEX reservations_active ON reservations (expire_us) WHERE state = 'ACTIVE';
CREATE TABLE orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    buyer TEXT NOT NULL,
    order_id TEXT NOT NULL,
    merchant TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('CREATED', 'RESERVED', 'PAID', 'FULFILLED', 'CANCELLED', 'REFUNDED')),
    lines TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    total_minor INTEGER NOT NULL CHECK (total_minor > 0),
    payment_state TEXT NOT NULL,
    payment_provider TEXT NOT NULL,
    payment_funding TEXT NOT NULL,
    payment_reference TEXT NOT NULL,
    authorized_minor INTEGER NOT NULL CHECK (authorized_minor >= 0),
    captured_minor INTEGER NOT NULL CHECK (captured_minor BETWEEN 0 AND total_minor),
    refunded_minor INTEGER NOT NULL CHECK (refunded_minor BETWEEN 0 AND captured_minor),
    authorization_expire_us INTEGER,
    reservation TEXT NOT NULL REFERENCES reservations (name),
    request_id TEXT NOT NULL UNIQUE,
    create_us INTEGER NOT NULL,
    update_us INTEGER NOT NULL,
    reservation_expire_us INTEGER NOT NULL,
    live TEXT NOT NULL,
    affiliate_visitor_id TEXT NOT NULL,
    cancel_reason TEXT NOT NULL,
    parental_consent_required INTEGER NOT NULL,
    fulfillment TEXT NOT NULL,
    refunds TEXT NOT NULL,
    shipping_address_sealed BLOB,
    recipient_name_sealed BLOB
);
CREATE INDEX orders_by_buyer ON orders (buyer, seq DESC);
CREATE INDEX orders_by_merchant ON orders (merchant, seq DESC);
CREATE INDEX orders_open ON orders (state, create_us) WHERE state IN ('CREATED', 'RESERVED');
CREATE TABLE parental_consents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    minor TEXT NOT NULL,
    granted INTEGER NOT NULL,
    evidence_reference TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    record_us INTEGER NOT NULL
);
CREATE INDEX parental_consents_by_minor ON parental_consents (minor, id DESC);
CREATE TABLE live_pins (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    live TEXT NOT NULL,
    product TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    disclosure_label TEXT NOT NULL,
    flash_price_minor INTEGER NOT NULL CHECK (flash_price_minor >= 0),
    end_us INTEGER,
    pin_us INTEGER NOT NULL,
    unpin_us INTEGER,
    units_sold INTEGER NOT NULL DEFAULT 0,
    ad TEXT NOT NULL DEFAULT ''
);
CREATE INDEX live_pins_by_live ON live_pins (live, seq DESC);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
"""
_APPEND_ONLY_V1 = """
CREATE TRIGGER parental_consents_append_only_update BEFORE UPDATE ON parental_consents
BEGIN SELECT RAISE(ABORT, 'parental consent records are append-only'); END;
"""
# PostgreSQL's text of version 1: the same tables with 64-bit integers and identity columns, and
# the append-only trigger in PL/pgSQL.
_TABLES_V1_POSTGRES = postgres_types(_TABLES_V1)
_APPEND_ONLY_V1_POSTGRES = """
CREATE FUNCTION parental_consents_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'parental consent records are append-only' USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER parental_consents_append_only_update BEFORE UPDATE ON parental_consents
FOR EACH ROW EXECUTE FUNCTION parental_consents_append_only();
"""
_REFUND_INTENTS = """
CREATE TABLE refund_intents (
    request_id TEXT PRIMARY KEY,
    order_name TEXT NOT NULL REFERENCES orders (name),
    refund TEXT NOT NULL,
    restock INTEGER NOT NULL,
    create_us INTEGER NOT NULL
);
CREATE INDEX refund_intents_by_order ON refund_intents (order_name);
"""
_TRACE_CONTEXT = "ALTER TABLE deliveries ADD COLUMN trace_context TEXT NOT NULL DEFAULT '{}';"

MIGRATIONS = (
    Migration(1, _TABLES_V1 + _APPEND_ONLY_V1, postgres=_TABLES_V1_POSTGRES + _APPEND_ONLY_V1_POSTGRES),
    outbox_migration(2),
    Migration.portable(3, _REFUND_INTENTS),
    # A delivery continues the trace of the call that queued it (the order's, for affiliate).
    Migration(4, _TRACE_CONTEXT, postgres=_TRACE_CONTEXT),
)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _optional_us(moment: dt.datetime | None) -> int | None:
    return None if moment is None else epoch_us(moment)


def _optional_time(micros: int | None) -> dt.datetime | None:
    return None if micros is None else from_epoch_us(micros)


class ShopUnit:
    """`ports.Unit` over one open transaction (or a read snapshot, for `read`)."""

    def __init__(self, tx: Transaction, now: dt.datetime) -> None:
        self._tx = tx
        self.now = now

    def _one(self, sql: str, parameters: Sequence[object]) -> Row | None:
        row: Row | None = self._tx.execute(sql, parameters).fetchone()
        return row

    # -- idempotency ---------------------------------------------------------------------------

    def claim(self, request_id: str, kind: str, print_: str) -> str | None:
        row = self._one("SELECT kind, fingerprint, result FROM requests WHERE request_id = ?", (request_id,))
        if row is None:
            return None
        if row["kind"] != kind or row["fingerprint"] != print_:
            raise RequestIdReused(request_id, row["kind"])
        return str(row["result"])

    def remember(self, request_id: str, kind: str, print_: str, result: str) -> None:
        self._tx.execute("INSERT INTO requests (request_id, kind, fingerprint, result) VALUES (?, ?, ?, ?)"
                         " ON CONFLICT (request_id) DO NOTHING", (request_id, kind, print_, result))

    # -- catalogue -----------------------------------------------------------------------------

    def product(self, name: str) -> Product | None:
        row = self._one("SELECT * FROM products WHERE name = ?", (name,))
        return None if row is None else product_of(row)

    def insert_product(self, product: Product) -> None:
        self._tx.execute(
            "INSERT INTO products (name, merchant, product_id, title, description, price_minor, currency_code, type,"
            " minimum_age, state, vat_rate_bps, image_uris, variants, components, create_us, update_us)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (product.name, product.merchant, product.product_id, *self._product_values(product),
             epoch_us(product.create_time), epoch_us(product.update_time)))
        for variant in product.variants:
            self._tx.execute("INSERT INTO stock (variant, product, update_us) VALUES (?, ?, ?)",
                             (product.variant_name(variant.variant_id), product.name, epoch_us(self.now)))

    def save_product(self, product: Product) -> None:
        self._tx.execute(
            "UPDATE products SET title = ?, description = ?, price_minor = ?, currency_code = ?, type = ?,"
            " minimum_age = ?, state = ?, vat_rate_bps = ?, image_uris = ?, variants = ?, components = ?,"
            " update_us = ? WHERE name = ?",
            (*self._product_values(product), epoch_us(product.update_time), product.name))

    @staticmethod
    def _product_values(product: Product) -> tuple[object, ...]:
        return (product.title, product.description, product.price_minor, product.currency_code, product.type.value,
                product.minimum_age, product.state.value, product.vat_rate_bps, _json(list(product.image_uris)),
                _json([[v.variant_id, v.title, [list(a) for a in v.attributes], v.price_minor]
                       for v in product.variants]),
                _json([[c.variant, c.quantity] for c in product.components]))

    # -- stock ---------------------------------------------------------------------------------

    def stock(self, variant: str) -> Stock | None:
        row = self._one("SELECT * FROM stock WHERE variant = ?", (variant,))
        return None if row is None else Stock(row["variant"], row["on_hand"], row["reserved"], row["sold"],
                                              from_epoch_us(row["update_us"]))

    def adjust_on_hand(self, variant: str, delta: int, request_id: str) -> Stock:
        moved = self._tx.execute(
            "UPDATE stock SET on_hand = on_hand + :delta, update_us = :now"
            " WHERE variant = :variant AND on_hand + :delta >= reserved + sold",
            {"delta": delta, "now": epoch_us(self.now), "variant": variant}).rowcount
        stock = self.stock(variant)
        assert stock is not None
        if not moved:
            raise FailedPrecondition(f"{variant} holds {stock.reserved + stock.sold} reserved and sold units",
                                     reason="STOCK_BELOW_COMMITTED",
                                     metadata={"variant": variant, "committed": str(stock.reserved + stock.sold)})
        self._tx.execute("INSERT INTO stock_adjustments (variant, delta, request_id, time_us) VALUES (?, ?, ?, ?)",
                         (variant, delta, request_id, epoch_us(self.now)))
        return stock

    def reserve(self, needs: Sequence[tuple[str, int]]) -> None:
        """Hold every unit of `needs` or none: a row that cannot take its share raises, and the
        committer rolls the whole unit back. Lapsed holds on a short variant are expired first."""
        for variant, quantity in needs:
            if self._take(variant, quantity):
                continue
            self._expire_lapsed(variant)
            if not self._take(variant, quantity):
                stock = self.stock(variant)
                raise OutOfStock(variant, quantity, stock.available if stock else 0)

    def _take(self, variant: str, quantity: int) -> bool:
        return bool(self._tx.execute(
            "UPDATE stock SET reserved = reserved + :quantity, update_us = :now"
            " WHERE variant = :variant AND on_hand - reserved - sold >= :quantity",
            {"quantity": quantity, "now": epoch_us(self.now), "variant": variant}).rowcount)

    def _expire_lapsed(self, variant: str) -> None:
        for reservation in self.expired_reservations(100, variant=variant):
            if reservation.holder.count("/") == 1:  # an order's hold lapses through its order
                self.release(reservation.items)
                self.set_reservation_state(reservation.name, ReservationState.EXPIRED)

    def _move(self, sql: str, needs: Sequence[tuple[str, int]]) -> None:
        for variant, quantity in needs:
            if not self._tx.execute(sql, {"quantity": quantity, "now": epoch_us(self.now), "variant": variant}).rowcount:
                raise AssertionError(f"stock of {variant} does not hold {quantity} units to move")

    def release(self, needs: Sequence[tuple[str, int]]) -> None:
        self._move("UPDATE stock SET reserved = reserved - :quantity, update_us = :now"
                   " WHERE variant = :variant AND reserved >= :quantity", needs)

    def sell(self, needs: Sequence[tuple[str, int]]) -> None:
        self._move("UPDATE stock SET reserved = reserved - :quantity, sold = sold + :quantity, update_us = :now"
                   " WHERE variant = :variant AND reserved >= :quantity", needs)

    def restock(self, needs: Sequence[tuple[str, int]]) -> None:
        self._move("UPDATE stock SET sold = sold - :quantity, update_us = :now"
                   " WHERE variant = :variant AND sold >= :quantity", needs)

    # -- reservations --------------------------------------------------------------------------

    def insert_reservation(self, reservation: Reservation) -> None:
        self._tx.execute(
            "INSERT INTO reservations (name, merchant, reservation_id, holder, request_id, items, state, create_us,"
            " expire_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (reservation.name, reservation.merchant, reservation.reservation_id, reservation.holder,
             reservation.request_id, _json([list(item) for item in reservation.items]), reservation.state.value,
             epoch_us(reservation.create_time), epoch_us(reservation.expire_time)))

    def reservation(self, name: str) -> Reservation | None:
        row = self._one("SELECT * FROM reservations WHERE name = ?", (name,))
        return None if row is None else reservation_of(row)

    def set_reservation_state(self, name: str, state: ReservationState) -> None:
        self._tx.execute("UPDATE reservations SET state = ? WHERE name = ?", (state.value, name))

    def expired_reservations(self, limit: int, *, variant: str = "") -> list[Reservation]:
        rows = self._tx.execute(
            "SELECT * FROM reservations WHERE state = 'ACTIVE' AND expire_us <= ? ORDER BY expire_us LIMIT ?",
            (epoch_us(self.now), limit)).fetchall()
        found = [reservation_of(row) for row in rows]
        return [r for r in found if not variant or any(v == variant for v, _ in r.items)]

    # -- orders --------------------------------------------------------------------------------

    def insert_order(self, order: Order, sealed: tuple[bytes | None, bytes | None]) -> None:
        self._tx.execute(
            "INSERT INTO orders (name, buyer, order_id, merchant, request_id, create_us, state, lines, currency_code,"
            " total_minor, payment_state, payment_provider, payment_funding, payment_reference, authorized_minor,"
            " captured_minor, refunded_minor, authorization_expire_us, reservation, update_us,"
            " reservation_expire_us, live, affiliate_visitor_id, cancel_reason, parental_consent_required,"
            " fulfillment, refunds, shipping_address_sealed, recipient_name_sealed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (order.name, order.buyer, order.order_id, order.merchant, order.request_id, epoch_us(order.create_time),
             *self._order_values(order), *sealed))

    def save_order(self, order: Order, *, was: OrderState) -> bool:
        """Write `order` over the stored one if that one is still in state `was` (the guard of the
        state machine, in SQL); False when another transition got there first."""
        return bool(self._tx.execute(
            "UPDATE orders SET state = ?, lines = ?, currency_code = ?, total_minor = ?, payment_state = ?,"
            " payment_provider = ?, payment_funding = ?, payment_reference = ?, authorized_minor = ?,"
            " captured_minor = ?, refunded_minor = ?, authorization_expire_us = ?, reservation = ?, update_us = ?,"
            " reservation_expire_us = ?, live = ?, affiliate_visitor_id = ?, cancel_reason = ?,"
            " parental_consent_required = ?, fulfillment = ?, refunds = ? WHERE name = ? AND state = ?",
            (*self._order_values(order), order.name, was.value)).rowcount)

    @staticmethod
    def _order_values(order: Order) -> tuple[object, ...]:
        payment = order.payment
        return (order.state.value, _json([_line_out(line) for line in order.lines]), order.currency_code,
                order.total_minor, payment.state.value, payment.provider, payment.funding.value, payment.reference,
                payment.authorized_minor, payment.captured_minor, payment.refunded_minor,
                _optional_us(payment.authorization_expire_time), order.reservation, epoch_us(order.update_time),
                epoch_us(order.reservation_expire_time), order.live, order.affiliate_visitor_id,
                order.cancel_reason.value, int(order.parental_consent_required),
                _json(dataclasses.asdict(order.fulfillment) if order.fulfillment else {}),
                _json([refund_out(r) for r in order.refunds]))

    def order(self, name: str) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE name = ?", (name,))
        return None if row is None else order_of(row)

    def spent_since(self, buyer: str, since: dt.datetime) -> int:
        row = self._one("SELECT COALESCE(SUM(total_minor - refunded_minor), 0) FROM orders"
                        " WHERE buyer = ? AND create_us >= ? AND state != 'CANCELLED'", (buyer, epoch_us(since)))
        assert row is not None
        return int(row[0])

    # -- parental consent ----------------------------------------------------------------------

    def parental_consent(self, user: str) -> bool:
        row = self._one("SELECT granted FROM parental_consents WHERE minor = ? ORDER BY id DESC LIMIT 1", (user,))
        return bool(row and row["granted"])

    def record_parental_consent(self, user: str, granted: bool, evidence: str, actor: str, request_id: str) -> None:
        self._tx.execute("INSERT INTO parental_consents (minor, granted, evidence_reference, recorded_by, request_id,"
                         " record_us) VALUES (?, ?, ?, ?, ?, ?)",
                         (user, int(granted), evidence, actor, request_id, epoch_us(self.now)))

    # -- pins ----------------------------------------------------------------------------------

    def active_pin(self, live: str, product: str) -> LivePin | None:
        row = self._one("SELECT * FROM live_pins WHERE live = ? AND product = ? AND unpin_us IS NULL"
                        " ORDER BY seq DESC LIMIT 1", (live, product))
        return None if row is None else pin_of(row)

    def insert_pin(self, pin: LivePin) -> None:
        self._tx.execute(
            "INSERT INTO live_pins (name, live, product, currency_code, disclosure_label, flash_price_minor, end_us,"
            " pin_us, unpin_us, units_sold, ad) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (pin.name, pin.live, pin.product, pin.currency_code, pin.disclosure_label, pin.flash_price_minor,
             _optional_us(pin.end_time), epoch_us(pin.pin_time), _optional_us(pin.unpin_time), pin.units_sold, pin.ad))

    def save_pin(self, pin: LivePin) -> None:
        self._tx.execute("UPDATE live_pins SET unpin_us = ?, ad = ? WHERE name = ?",
                         (_optional_us(pin.unpin_time), pin.ad, pin.name))

    def pin(self, name: str) -> LivePin | None:
        row = self._one("SELECT * FROM live_pins WHERE name = ?", (name,))
        return None if row is None else pin_of(row)

    def add_pin_sales(self, live: str, product: str, units: int) -> None:
        self._tx.execute("UPDATE live_pins SET units_sold = units_sold + ? WHERE seq ="
                         " (SELECT MAX(seq) FROM live_pins WHERE live = ? AND product = ?)", (units, live, product))

    # -- refund intents ------------------------------------------------------------------------

    def refund_intents(self, order: str) -> list[tuple[Refund, bool]]:
        rows = self._tx.execute("SELECT refund, restock FROM refund_intents WHERE order_name = ?", (order,)).fetchall()
        return [(refund_in(json.loads(row["refund"])), bool(row["restock"])) for row in rows]

    def record_refund_intent(self, order: str, refund: Refund, restock: bool) -> None:
        self._tx.execute("INSERT INTO refund_intents (request_id, order_name, refund, restock, create_us)"
                         " VALUES (?, ?, ?, ?, ?)", (refund.request_id, order, _json(refund_out(refund)), int(restock),
                                                     epoch_us(self.now)))

    def drop_refund_intent(self, request_id: str) -> None:
        self._tx.execute("DELETE FROM refund_intents WHERE request_id = ?", (request_id,))

    # -- outboxes ------------------------------------------------------------------------------

    def deliver(self, kind: str, payload: dict[str, object], *, traced_by: object) -> None:
        trace = traced_by.trace_context if isinstance(traced_by, TracedEvent) else {}
        self._tx.execute("INSERT INTO deliveries (kind, payload, next_attempt_us, trace_context) VALUES (?, ?, ?, ?)",
                         (kind, _json(payload), epoch_us(self.now), _json(dict(trace))))

    def audit(self, event: object) -> None:
        assert isinstance(event, TracedEvent)
        write_event(self._tx, event)


def _line_out(line: OrderLine) -> list[object]:
    return [line.product, line.variant, line.title, line.quantity, line.unit_price_minor, line.tax_minor,
            line.total_minor, line.vat_rate_bps, line.flash_price, [list(n) for n in line.needs],
            line.refunded_quantity]


def _line_in(values: list[Any]) -> OrderLine:
    return OrderLine(values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7],
                     values[8], tuple((v, q) for v, q in values[9]), values[10])


def refund_out(refund: Refund) -> list[object]:
    return [refund.request_id, [list(i) for i in refund.items], refund.amount_minor, refund.reason,
            epoch_us(refund.create_time)]


def refund_in(values: list[Any]) -> Refund:
    return Refund(values[0], tuple((i[0], i[1], i[2]) for i in values[1]), values[2], values[3],
                  from_epoch_us(values[4]))


def product_of(row: Row) -> Product:
    return Product(
        merchant=row["merchant"], product_id=row["product_id"], title=row["title"], description=row["description"],
        price_minor=row["price_minor"], currency_code=row["currency_code"], type=ProductType(row["type"]),
        minimum_age=row["minimum_age"], state=ProductState(row["state"]), vat_rate_bps=row["vat_rate_bps"],
        image_uris=tuple(json.loads(row["image_uris"])),
        variants=tuple(Variant(v[0], v[1], tuple((a[0], a[1]) for a in v[2]), v[3]) for v in json.loads(row["variants"])),
        components=tuple(Component(c[0], c[1]) for c in json.loads(row["components"])),
        create_time=from_epoch_us(row["create_us"]), update_time=from_epoch_us(row["update_us"]))


def reservation_of(row: Row) -> Reservation:
    return Reservation(row["merchant"], row["reservation_id"], row["holder"], row["request_id"],
                       tuple((v, q) for v, q in json.loads(row["items"])), ReservationState(row["state"]),
                       from_epoch_us(row["create_us"]), from_epoch_us(row["expire_us"]))


def order_of(row: Row) -> Order:
    fulfillment = json.loads(row["fulfillment"])
    return Order(
        buyer=row["buyer"], order_id=row["order_id"], merchant=row["merchant"], state=OrderState(row["state"]),
        lines=tuple(_line_in(line) for line in json.loads(row["lines"])), currency_code=row["currency_code"],
        payment=Payment(PaymentState(row["payment_state"]), row["payment_provider"], Funding(row["payment_funding"]),
                        row["payment_reference"], row["authorized_minor"], row["captured_minor"],
                        row["refunded_minor"], _optional_time(row["authorization_expire_us"])),
        reservation=row["reservation"], request_id=row["request_id"], create_time=from_epoch_us(row["create_us"]),
        update_time=from_epoch_us(row["update_us"]), reservation_expire_time=from_epoch_us(row["reservation_expire_us"]),
        live=row["live"], affiliate_visitor_id=row["affiliate_visitor_id"],
        cancel_reason=CancelReason(row["cancel_reason"]),
        parental_consent_required=bool(row["parental_consent_required"]),
        fulfillment=Fulfillment(**fulfillment) if fulfillment else None,
        refunds=tuple(refund_in(r) for r in json.loads(row["refunds"])),
        has_sealed_fields=row["shipping_address_sealed"] is not None or row["recipient_name_sealed"] is not None)


def pin_of(row: Row) -> LivePin:
    creator, live_id = row["live"].split("/")[1], row["live"].split("/")[3]
    return LivePin(creator, live_id, row["name"].rsplit("/", 1)[1], row["product"], row["currency_code"],
                   row["disclosure_label"], from_epoch_us(row["pin_us"]), row["flash_price_minor"],
                   _optional_time(row["end_us"]), _optional_time(row["unpin_us"]), row["units_sold"], row["ad"])


@dataclasses.dataclass(frozen=True)
class Delivery:
    delivery_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    trace_context: dict[str, str]


def _delivery(row: Row) -> Delivery:
    return Delivery(row["id"], row["kind"], json.loads(row["payload"]), row["attempts"], json.loads(row["trace_context"]))


class ShopStore:
    """The writer (one group committer), a reader, and the audit outbox of the shop's store."""

    def __init__(self, writer: Database, *, clock: Callable[[], dt.datetime], max_batch: int = 256) -> None:
        self._writer = writer
        self._reader = writer.open_reader()
        self._clock = clock
        self._committer = GroupCommitter(self._writer, name="shop-store", max_batch=max_batch)
        self.audit_outbox = DatabaseAuditOutbox(self._reader, committer=self._committer)

    @classmethod
    def open(cls, data_root: Path, *, clock: Callable[[], dt.datetime]) -> ShopStore:
        return cls(open_database("shop", MIGRATIONS, root=data_root), clock=clock)

    @property
    def shared(self) -> bool:
        """Whether other replicas may be writing this store too (PostgreSQL): then nothing in it
        is known to be this process's own, such as a checkout in flight."""
        return self._writer.engine == "postgres"

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        self._committer.add_commit_listener(listener)

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
        self._reader.close()

    async def run(self, work: Callable[[ShopUnit], T], *, refused: object | None = None) -> T:
        now = self._clock()

        def unit(tx: Transaction) -> T:
            return work(ShopUnit(tx, now))

        def record_refusal(tx: Transaction, error: DomainError) -> None:
            assert isinstance(refused, TracedEvent)
            write_event(tx, refused.with_outcome(Outcome.REJECTED, error.reason))

        return await self._committer.run(unit, on_refused=record_refusal if refused is not None else None)

    def read_now(self, work: Callable[[ShopUnit], T]) -> T:
        with self._reader.reading() as connection:
            return work(ShopUnit(connection, self._clock()))

    async def read(self, work: Callable[[ShopUnit], T]) -> T:
        return await asyncio.to_thread(self.read_now, work)

    async def sweep_candidates(self, *, created_before: dt.datetime, now: dt.datetime, limit: int) -> list[Order]:
        def look() -> list[Order]:
            with self._reader.reading() as connection:
                rows = connection.execute(
                    "SELECT * FROM orders WHERE (state = 'CREATED' AND create_us < :before)"
                    " OR (state = 'RESERVED' AND payment_state IN ('CAPTURING', 'VOIDING') AND update_us < :before)"
                    " OR (state = 'RESERVED' AND reservation_expire_us <= :now) ORDER BY seq LIMIT :limit",
                    {"before": epoch_us(created_before), "now": epoch_us(now), "limit": limit}).fetchall()
            return [order_of(row) for row in rows]

        return await asyncio.to_thread(look)

    async def lost_refunds(self, *, before: dt.datetime, limit: int) -> list[tuple[str, Refund, bool]]:
        """Refund intents older than `before`: their call was lost between the provider and the order."""
        def look() -> list[tuple[str, Refund, bool]]:
            with self._reader.reading() as connection:
                rows = connection.execute("SELECT order_name, refund, restock FROM refund_intents WHERE create_us < ?"
                                          " ORDER BY create_us LIMIT ?", (epoch_us(before), limit)).fetchall()
            return [(row["order_name"], refund_in(json.loads(row["refund"])), bool(row["restock"])) for row in rows]

        return await asyncio.to_thread(look)

    # -- lists ---------------------------------------------------------------------------------

    def products(self, merchant: str | None, state: ProductState | None, words: Sequence[str], viewer: str,
                 before: int | None, limit: int) -> list[tuple[int, Product]]:
        clauses: list[str] = ["1 = 1"]
        parameters: list[object] = []
        if merchant is not None:
            clauses.append("merchant = ?")
            parameters.append(merchant)
        if state is not None:
            clauses.append("state = ?")
            parameters.append(state.value)
        clauses.append("(state != 'DRAFT' OR merchant = ?)")
        parameters.append(viewer)
        for word in words:
            clauses.append("lower(title) LIKE ? ESCAPE '\\'")
            parameters.append("%" + _like_escaped(word.lower()) + "%")
        if before is not None:
            clauses.append("seq < ?")
            parameters.append(before)
        with self._reader.reading() as connection:
            rows = connection.execute(f"SELECT * FROM products WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT ?",
                                      [*parameters, limit]).fetchall()
        return [(row["seq"], product_of(row)) for row in rows]

    def orders(self, buyer: str | None, merchant: str | None, state: OrderState | None, before: int | None,
               limit: int) -> list[tuple[int, Order]]:
        clauses: list[str] = ["1 = 1"]
        parameters: list[object] = []
        for column, value in (("buyer", buyer), ("merchant", merchant), ("state", state.value if state else None)):
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if before is not None:
            clauses.append("seq < ?")
            parameters.append(before)
        with self._reader.reading() as connection:
            rows = connection.execute(f"SELECT * FROM orders WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT ?",
                                      [*parameters, limit]).fetchall()
        return [(row["seq"], order_of(row)) for row in rows]

    def pins(self, live: str, active_only: bool, now: dt.datetime, before: int | None,
             limit: int) -> list[tuple[int, LivePin]]:
        clauses: list[str] = ["live = ?"]
        parameters: list[object] = [live]
        if active_only:
            clauses.append("unpin_us IS NULL AND (end_us IS NULL OR end_us > ?)")
            parameters.append(epoch_us(now))
        if before is not None:
            clauses.append("seq < ?")
            parameters.append(before)
        with self._reader.reading() as connection:
            rows = connection.execute(f"SELECT * FROM live_pins WHERE {' AND '.join(clauses)} ORDER BY seq DESC"
                                      " LIMIT ?", [*parameters, limit]).fetchall()
        return [(row["seq"], pin_of(row)) for row in rows]

    def sealed_fields(self, order: str) -> tuple[bytes | None, bytes | None]:
        with self._reader.reading() as connection:
            row = connection.execute("SELECT shipping_address_sealed, recipient_name_sealed FROM orders WHERE name = ?",
                                     (order,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def parental_consents(self, minor: str) -> list[dict[str, object]]:
        with self._reader.reading() as connection:
            rows = connection.execute("SELECT granted, evidence_reference, recorded_by, record_us FROM parental_consents"
                                      " WHERE minor = ? ORDER BY id", (minor,)).fetchall()
        return [{"granted": bool(row["granted"]), "evidence_reference": row["evidence_reference"],
                 "recorded_by": row["recorded_by"], "record_time": from_epoch_us(row["record_us"]).isoformat()}
                for row in rows]

    async def erase_personal_fields(self, buyer: str) -> int:
        """Drop the sealed personal fields of a buyer's orders; the orders stay (HGB/AO)."""
        def work(tx: Transaction) -> int:
            return int(tx.execute("UPDATE orders SET shipping_address_sealed = NULL, recipient_name_sealed = NULL"
                                  " WHERE buyer = ?", (buyer,)).rowcount)

        return await self._committer.run(work)

    # -- the delivery outbox ---------------------------------------------------------------------

    def due_deliveries(self, now: dt.datetime, limit: int) -> list[Delivery]:
        with self._reader.reading() as connection:
            rows = connection.execute("SELECT * FROM deliveries WHERE next_attempt_us <= ? ORDER BY id LIMIT ?",
                                      (epoch_us(now), limit)).fetchall()
        return [_delivery(row) for row in rows]

    async def claim_due_deliveries(self, now: dt.datetime, limit: int, *, lease: dt.timedelta) -> list[Delivery]:
        """The due entries, each taken for `lease` in the same write transaction that finds it due,
        so two replicas' shippers never send one entry at once; an entry whose shipper died is due
        again when its lease ends. Only entries the reader saw due are looked at: an idle outbox
        costs no write."""
        if not await asyncio.to_thread(self.due_deliveries, now, 1):
            return []

        def claim(tx: Transaction) -> list[Delivery]:
            rows = tx.execute("SELECT * FROM deliveries WHERE next_attempt_us <= ? ORDER BY id LIMIT ?",
                              (epoch_us(now), limit)).fetchall()
            if rows:
                tx.executemany("UPDATE deliveries SET next_attempt_us = ? WHERE id = ?",
                               [(epoch_us(now + lease), row["id"]) for row in rows])
            return [_delivery(row) for row in rows]

        return await self._committer.run(claim)

    async def delivered(self, delivery_id: int) -> None:
        await self._committer.run(lambda tx: tx.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,)))

    async def retry_later(self, delivery_id: int, at: dt.datetime, error: str) -> None:
        await self._committer.run(lambda tx: tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1, next_attempt_us = ?, last_error = ? WHERE id = ?",
            (epoch_us(at), error[:500], delivery_id)))

    def next_delivery_time(self) -> dt.datetime | None:
        with self._reader.reading() as connection:
            row = connection.execute("SELECT MIN(next_attempt_us) FROM deliveries").fetchone()
        return None if row[0] is None else from_epoch_us(row[0])

"""kill -9 of the shop process in the middle of checkouts, then a restart: every order is complete
or fully compensated, no payment is left without its order, and stock adds up.

The shop runs as a real subprocess (`run_service_process`, as `limelight serve shop` does) with
synchronous=FULL group commits. Buyers check out, capture and cancel until the process is killed
with SIGKILL; the restart's sweep compensates every checkout the kill cut short (CREATED).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from limelight.shop.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.testing import ServiceProcess
from libs.ports import reserve_port

BUYERS = 32
LOAD_SECONDS = 1.5
PRODUCTS = {"drop-a": 400, "drop-b": 400}


@pytest.fixture
def shop_process(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess("shop", tmp_path, reserve_port(), {
        "LIMELIGHT_SHOP_AUDIT_SHIPPING": "off", "LIMELIGHT_COMPLIANCE_TARGET": "127.0.0.1:1",
        "LIMELIGHT_AFFILIATE_TARGET": "127.0.0.1:1", "LIMELIGHT_GIFTS_TARGET": "127.0.0.1:1"})
    process.start()
    yield process
    process.stop()


def _auth(root: Path, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(subject, frozenset(roles or {Role.VIEWER}), birth_date=dt.date(1990, 1, 1))
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=1))}"),)


async def _prepare(process: ServiceProcess, channel: grpc.aio.Channel) -> None:
    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
    merchant = _auth(process.root, "users/acme", Role.MERCHANT)
    for product_id, units in PRODUCTS.items():
        await catalog.CreateProduct(catalog_pb2.CreateProductRequest(
            parent="merchants/acme", product_id=product_id, product=catalog_pb2.Product(
                title=product_id, price_minor=1_000, currency_code="EUR", type=catalog_pb2.PRODUCT_TYPE_DIGITAL,
                state=catalog_pb2.PRODUCT_STATE_ACTIVE)), metadata=merchant)
        await inventory.AdjustInventory(inventory_pb2.AdjustInventoryRequest(
            request_id=str(uuid.uuid4()), name=f"merchants/acme/products/{product_id}/variants/default/inventory",
            delta=units, reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK), metadata=merchant)


async def test_after_kill_9_every_order_is_complete_or_compensated_and_stock_adds_up(
        shop_process: ServiceProcess) -> None:
    await shop_process.wait_serving()
    root = shop_process.root
    answered: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(shop_process.target) as channel:
        await _prepare(shop_process, channel)
        orders = orders_pb2_grpc.OrderServiceStub(channel)

        async def buyer(index: int) -> None:
            auth = _auth(root, f"users/buyer{index}")
            step = 0
            while True:
                step += 1
                product = list(PRODUCTS)[step % 2]
                quantity = 1 + step % 3
                try:
                    placed = await orders.Checkout(orders_pb2.CheckoutRequest(
                        request_id=str(uuid.uuid4()), buyer=f"users/buyer{index}",
                        items=[orders_pb2.CheckoutItem(product=f"merchants/acme/products/{product}", quantity=quantity)],
                        payment_method=orders_pb2.PaymentMethod(provider="local", token="tok_debit"),
                        expected_total_minor=1_000 * quantity, currency_code="EUR"), metadata=auth, timeout=5)
                    answered["checkout"] += 1
                    name = placed.order.name
                    if step % 3 == 0:
                        await orders.CancelOrder(orders_pb2.CancelOrderRequest(
                            request_id=str(uuid.uuid4()), name=name, reason=orders_pb2.CANCEL_REASON_BUYER_REQUESTED),
                            metadata=auth, timeout=5)
                    elif step % 3 == 1:
                        await orders.CaptureOrder(orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()),
                                                                                 name=name), metadata=auth, timeout=5)
                except grpc.aio.AioRpcError as error:
                    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        return  # the process is gone
                    answered[error.code().name] += 1

        load = [asyncio.create_task(buyer(index)) for index in range(BUYERS)]
        await asyncio.sleep(LOAD_SECONDS)
        shop_process.kill()
        await asyncio.wait(load, timeout=30)
    assert answered["checkout"] > 50, f"the load never got going: {answered}"

    shop_process.start()
    await shop_process.wait_serving()

    with sqlite3.connect(root / "shop" / "shop.db") as shop, \
            sqlite3.connect(root / "shop" / "local-payments.db") as payments:
        states = dict(shop.execute("SELECT state, COUNT(*) FROM orders GROUP BY state").fetchall())
        assert "CREATED" not in states, states
        assert states.get("PAID", 0) > 0 and states.get("CANCELLED", 0) > 0, states
        authorisations = dict(payments.execute("SELECT payment_key, state FROM authorizations").fetchall())
        order_rows = shop.execute("SELECT name, state, reservation FROM orders").fetchall()
        reservation_states = dict(shop.execute("SELECT name, state FROM reservations").fetchall())
        expected_payment: dict[str, set[str | None]] = {"RESERVED": {"AUTHORIZED"}, "PAID": {"CAPTURED"}, "CANCELLED": {"VOIDED", None}}
        expected_hold = {"RESERVED": "ACTIVE", "PAID": "COMMITTED", "CANCELLED": "RELEASED"}
        for name, state, reservation in order_rows:
            assert authorisations.get(name) in expected_payment[state], (name, state, authorisations.get(name))
            assert reservation_states[reservation] == expected_hold[state], (name, state)
        # Never a payment without its order.
        held = {key for key, state in authorisations.items() if state in ("AUTHORIZED", "CAPTURED")}
        assert held <= {name for name, state, _ in order_rows if state in ("RESERVED", "PAID")}
        for product, units in PRODUCTS.items():
            variant = f"merchants/acme/products/{product}/variants/default"
            on_hand, reserved, sold = shop.execute("SELECT on_hand, reserved, sold FROM stock WHERE variant = ?",
                                                   (variant,)).fetchone()
            by_state: Counter[str] = Counter()
            for state, items in shop.execute("SELECT state, items FROM reservations").fetchall():
                for item_variant, quantity in json.loads(items):
                    if item_variant == variant:
                        by_state[state] += quantity
            assert on_hand == units
            assert (reserved, sold) == (by_state["ACTIVE"], by_state["COMMITTED"]), (product, by_state)
            assert on_hand - reserved - sold >= 0

"""A limited drop under heavy concurrency through real gRPC clients sells exactly its stock.

Many concurrent aio calls (each buyer its own token and request), against a real shop server
over a real store (SQLite, and PostgreSQL): the store's conditional updates are the only thing
between 1,000 buyers and 100 units. And two shop replicas over one store, buyers spread over
both, sell exactly the stock too.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
from limelight.shop.v1 import catalog_pb2, orders_pb2

from libs.kit.testing import error_info
from services.shop.conftest import MovableClock, Shop, start_shop

BUYERS = 1_000
UNITS = 100


async def _buy_all(shop: Shop, requests: list[orders_pb2.CheckoutRequest], *,
                   replicas: tuple[Shop, ...] = ()) -> tuple[list[orders_pb2.Order], list[str]]:
    """Every request at once; request i goes to replica i mod n (`shop` alone when none are given)."""
    servers = replicas or (shop,)
    sold: list[orders_pb2.Order] = []
    refused: list[str] = []

    async def buy(server: Shop, request: orders_pb2.CheckoutRequest) -> None:
        try:
            response = await server.orders.Checkout(request, metadata=server.auth(request.buyer), timeout=60)
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.FAILED_PRECONDITION, error.details()
            refused.append(error_info(error).reason)
            return
        sold.append(response.order)

    await asyncio.gather(*(buy(servers[index % len(servers)], request) for index, request in enumerate(requests)))
    return sold, refused


def _stock_rows(shop: Shop) -> list[tuple[str, int, int, int]]:
    return [(str(v), int(str(h)), int(str(r)), int(str(s)))
            for v, h, r, s in shop.query("SELECT variant, on_hand, reserved, sold FROM stock ORDER BY variant")]


async def test_a_drop_of_100_units_to_1000_concurrent_buyers_sells_exactly_100(shop: Shop) -> None:
    product = await shop.product("sneaker-drop", price=12_900, stock=UNITS)
    variant = product.variants[0].name
    requests = [shop.checkout_request(f"fan{index}", product.name, total=12_900) for index in range(BUYERS)]

    sold, refused = await _buy_all(shop, requests)

    assert len(sold) == UNITS
    assert sum(line.quantity for order in sold for line in order.lines) == UNITS
    assert all(order.state == orders_pb2.ORDER_STATE_RESERVED for order in sold)
    assert refused == ["OUT_OF_STOCK"] * (BUYERS - UNITS)
    inventory = await shop.stock(variant)
    assert (inventory.on_hand, inventory.reserved, inventory.available) == (UNITS, UNITS, 0)
    assert _stock_rows(shop) == [(variant, UNITS, UNITS, 0)]


async def test_a_bundle_drop_reserves_every_component_or_none(shop: Shop) -> None:
    """medusajs/medusa #16502: bundles oversold because their components were checked one by one.
    Here the bundle and its component sell at once, and neither outsells the component's stock."""
    shirt = await shop.product("shirt", price=2_000, stock=UNITS)
    cap = await shop.product("cap", price=1_500, stock=3 * UNITS)
    bundle = await shop.product("fan-kit", price=3_000, type=catalog_pb2.PRODUCT_TYPE_BUNDLE, bundle_components=[
        catalog_pb2.BundleComponent(variant=shirt.variants[0].name, quantity=1),
        catalog_pb2.BundleComponent(variant=cap.variants[0].name, quantity=2)])
    requests = [shop.checkout_request(f"kit{index}", bundle.name, total=3_000) for index in range(BUYERS // 2)]
    requests += [shop.checkout_request(f"shirt{index}", shirt.name, total=2_000) for index in range(BUYERS // 2)]

    sold, refused = await _buy_all(shop, requests)

    shirts = sum(line.quantity for order in sold for line in order.lines)  # a kit holds one shirt
    kits = sum(line.quantity for order in sold for line in order.lines if line.product == bundle.name)
    assert shirts == UNITS
    assert len(refused) == BUYERS - UNITS and set(refused) == {"OUT_OF_STOCK"}
    rows = dict((variant, (on_hand, reserved, sold)) for variant, on_hand, reserved, sold in _stock_rows(shop))
    assert rows[shirt.variants[0].name] == (UNITS, UNITS, 0)
    assert rows[cap.variants[0].name] == (3 * UNITS, 2 * kits, 0)


async def test_two_buyers_of_the_last_unit_get_one_order(shop: Shop) -> None:
    """medusajs/medusa #16825: two orders were placed for the last unit in stock."""
    product = await shop.product("last-one", price=5_000, stock=1)
    for attempt in range(20):
        requests = [shop.checkout_request(f"race{attempt}x{side}", product.name, total=5_000) for side in range(2)]
        sold, refused = await _buy_all(shop, requests)
        assert len(sold) == 1 and refused == ["OUT_OF_STOCK"]
        await shop.orders.CancelOrder(orders_pb2.CancelOrderRequest(
            request_id=str(uuid.uuid4()), name=sold[0].name, reason=orders_pb2.CANCEL_REASON_BUYER_REQUESTED),
            metadata=shop.auth(sold[0].buyer))
    assert _stock_rows(shop) == [(product.variants[0].name, 1, 0, 0)]


async def test_two_replicas_over_one_store_sell_exactly_the_stock(tmp_path: Path, database_engine: str) -> None:  # noqa: F811
    """Two shop servers on one data directory and one store: each decides on the same stock rows
    under the store's writer lock, so together they sell no unit twice."""
    clock = MovableClock()
    first = await start_shop(tmp_path, clock=clock)
    second = await start_shop(tmp_path, clock=clock)
    try:
        units, buyers = 30, 300
        product = await first.product("replica-drop", price=4_900, stock=units)
        requests = [first.checkout_request(f"both{index}", product.name, total=4_900) for index in range(buyers)]

        sold, refused = await _buy_all(first, requests, replicas=(first, second))

        assert len(sold) == units and len({order.name for order in sold}) == units
        assert refused == ["OUT_OF_STOCK"] * (buyers - units)
        assert _stock_rows(second) == [(product.variants[0].name, units, units, 0)]
        assert first.query("SELECT COUNT(*) FROM orders") == [(units,)]
        assert first.query("SELECT COUNT(*) FROM authorizations WHERE state = 'AUTHORIZED'", payments=True) == [(units,)]
    finally:
        await second.close()
        await first.close()

"""The shop's store on both engines: the schema itself refuses an oversold or negative stock row,
a reused request id and an edited parental consent; and two stores over one database (two
replicas) never sell one unit twice nor take one delivery at once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.storage.database import Database, IntegrityError, open_database
from services.shop.model import OutOfStock, Product, ProductState, ProductType, Variant
from services.shop.store import MIGRATIONS, ShopStore, ShopUnit

T0 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
PRODUCT = Product("acme", "drop", "Drop", "", 1_000, "EUR", ProductType.PHYSICAL, 0, ProductState.ACTIVE,
                  1_900, (), (Variant("default"),), (), T0, T0)
VARIANT = PRODUCT.variant_name("default")


@pytest.fixture
def database(tmp_path: Path, database_engine: str) -> Iterator[Database]:  # noqa: F811 (the imported fixture)
    opened = open_database("shop", MIGRATIONS, root=tmp_path)
    with opened.transaction() as tx:
        unit = ShopUnit(tx, T0)
        unit.insert_product(PRODUCT)
        unit.adjust_on_hand(VARIANT, 3, "restock-1")
    yield opened
    opened.close()


@pytest.mark.parametrize("change", [
    "UPDATE stock SET reserved = on_hand + 1",  # oversold
    "UPDATE stock SET reserved = 2, sold = 2",  # reserved and sold together past what is on hand
    "UPDATE stock SET on_hand = -1",
])
def test_the_schema_refuses_stock_that_is_oversold_or_negative(database: Database, change: str) -> None:
    with pytest.raises(IntegrityError), database.transaction() as tx:
        tx.execute(change)
    with database.reading() as tx:
        assert tuple(tx.execute("SELECT on_hand, reserved, sold FROM stock").fetchone()) == (3, 0, 0)


def test_the_schema_refuses_a_reused_adjustment_request_id(database: Database) -> None:
    with pytest.raises(IntegrityError), database.transaction() as tx:
        ShopUnit(tx, T0).adjust_on_hand(VARIANT, 1, "restock-1")


def test_parental_consents_are_append_only_in_the_schema(database: Database) -> None:
    with database.transaction() as tx:
        ShopUnit(tx, T0).record_parental_consent("users/kid", True, "evidence", "users/admin", "consent-1")
    with pytest.raises(IntegrityError), database.transaction() as tx:
        tx.execute("UPDATE parental_consents SET granted = 0")
    with database.reading() as tx:
        assert ShopUnit(tx, T0).parental_consent("users/kid")


async def test_two_replicas_over_one_store_never_sell_one_unit_twice(tmp_path: Path, database_engine: str) -> None:  # noqa: F811
    units = 25
    first = ShopStore.open(tmp_path, clock=lambda: T0)
    second = ShopStore.open(tmp_path, clock=lambda: T0)
    try:
        def seed(unit: ShopUnit) -> None:
            unit.insert_product(PRODUCT)
            unit.adjust_on_hand(VARIANT, units, "restock")

        await first.run(seed)

        async def buy(store: ShopStore) -> bool:
            try:
                await store.run(lambda unit: unit.reserve([(VARIANT, 1)]))
            except OutOfStock:
                return False
            return True

        bought = await asyncio.gather(*(buy(first if index % 2 else second) for index in range(4 * units)))
        assert sum(bought) == units
        stock = second.read_now(lambda unit: unit.stock(VARIANT))
        assert stock is not None and (stock.on_hand, stock.reserved, stock.sold) == (units, units, 0)
    finally:
        first.close()
        second.close()


async def test_two_replicas_never_take_one_delivery_at_once(tmp_path: Path, database_engine: str) -> None:  # noqa: F811
    first = ShopStore.open(tmp_path, clock=lambda: T0)
    second = ShopStore.open(tmp_path, clock=lambda: T0)
    try:
        await first.run(lambda unit: unit.deliver("affiliate.order_event", {"n": 1}, traced_by=None))
        lease = dt.timedelta(minutes=10)
        taken = await asyncio.gather(*(store.claim_due_deliveries(T0, 10, lease=lease) for store in (first, second)))
        assert sorted(len(claimed) for claimed in taken) == [0, 1]
        assert await second.claim_due_deliveries(T0 + lease - dt.timedelta(seconds=1), 10, lease=lease) == []
        again = await second.claim_due_deliveries(T0 + lease, 10, lease=lease)  # its shipper died: due again
        assert [d.payload for d in again] == [{"n": 1}]
    finally:
        first.close()
        second.close()

"""Fixtures for the shop's tests: a real shop server on a loopback port over a real store (SQLite
in tmp_path, or a throwaway PostgreSQL: `shop` runs each test on both), a clock the test moves,
and helpers that read as the steps of a story."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
from limelight.shop.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    live_pins_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from libs.storage.database import open_database
from libs.storage.testing import database_engine, postgres_server  # noqa: F401
from services.shop.config import ShopConfig
from services.shop.payments import open_books
from services.shop.server import ShopService
from services.shop.store import MIGRATIONS

START = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
# Nothing listens here: calls to services a test does not start fail at once as UNAVAILABLE.
NOWHERE = "127.0.0.1:1"
Metadata = tuple[tuple[str, str], ...]


class MovableClock:
    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


class Shop:
    """A running shop and what a test needs to talk to it as anyone."""

    def __init__(self, running: RunningService, service: ShopService, root: Path, clock: MovableClock) -> None:
        self.running = running
        self.service = service
        self.root = root
        self.clock = clock
        self.channel = grpc.aio.insecure_channel(running.target)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)
        self.inventory = inventory_pb2_grpc.InventoryServiceStub(self.channel)
        self.pins = live_pins_pb2_grpc.LivePinServiceStub(self.channel)
        self.orders = orders_pb2_grpc.OrderServiceStub(self.channel)

    def auth(self, subject: str, *roles: Role, age: int | None = 30) -> Metadata:
        claims = TokenClaims(subject, frozenset(roles or {Role.VIEWER}),
                             birth_date=None if age is None else birth_date_for_age(age, self.clock().date()))
        token = mint_token(platform_signing_key(self.root), claims, ttl=dt.timedelta(days=3650),
                           now=dt.datetime.now(dt.UTC))
        return (("authorization", f"Bearer {token}"),)

    def merchant(self, merchant: str = "acme") -> Metadata:
        return self.auth(f"users/{merchant}", Role.MERCHANT)

    async def product(self, product_id: str, *, price: int = 1_000, stock: int = 0, merchant: str = "acme",
                      **fields: object) -> catalog_pb2.Product:
        given: dict[str, object] = {"title": f"Product {product_id}", "price_minor": price, "currency_code": "EUR",
                                    "type": catalog_pb2.PRODUCT_TYPE_PHYSICAL,
                                    "state": catalog_pb2.PRODUCT_STATE_ACTIVE, "vat_rate_bps": 1_900, **fields}
        product = catalog_pb2.Product(**given)  # type: ignore[arg-type]
        created = await self.catalog.CreateProduct(catalog_pb2.CreateProductRequest(
            parent=f"merchants/{merchant}", product_id=product_id, product=product), metadata=self.merchant(merchant))
        if stock:
            for variant in created.product.variants:
                await self.restock(variant.name, stock, merchant=merchant)
        return created.product

    async def restock(self, variant: str, units: int, *, merchant: str = "acme") -> inventory_pb2.Inventory:
        response = await self.inventory.AdjustInventory(inventory_pb2.AdjustInventoryRequest(
            request_id=str(uuid.uuid4()), name=f"{variant}/inventory", delta=units,
            reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK), metadata=self.merchant(merchant))
        return response.inventory

    async def stock(self, variant: str, *, merchant: str = "acme") -> inventory_pb2.Inventory:
        response = await self.inventory.GetInventory(inventory_pb2.GetInventoryRequest(name=f"{variant}/inventory"),
                                                     metadata=self.merchant(merchant))
        return response.inventory

    def checkout_request(self, buyer: str, product: str, quantity: int = 1, *, total: int, token: str = "tok_debit",
                         **fields: object) -> orders_pb2.CheckoutRequest:
        return orders_pb2.CheckoutRequest(
            request_id=str(uuid.uuid4()), buyer=f"users/{buyer}",
            items=[orders_pb2.CheckoutItem(product=product, quantity=quantity)],
            payment_method=orders_pb2.PaymentMethod(provider="local", token=token), expected_total_minor=total,
            currency_code="EUR", **fields)  # type: ignore[arg-type]

    def query(self, sql: str, parameters: Sequence[object] = (), *, payments: bool = False) -> list[tuple[object, ...]]:
        """Rows of the shop's store (or the local provider's books) as they are now, on either engine."""
        return query(self.root, sql, parameters, payments=payments)

    async def close(self) -> None:
        await self.channel.close()
        await self.running.stop(0.5)


async def start_shop(root: Path, *, clock: MovableClock | None = None, config: ShopConfig | None = None,
                     targets: dict[str, str] | None = None) -> Shop:
    clock = clock or MovableClock()
    config = config or ShopConfig(ship_audit=False, sweep_interval=dt.timedelta(hours=1))
    built: list[ShopService] = []

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        service = ShopService(runtime, config=config, clock=clock, personal=PersonalData(EphemeralDataKeys()))
        built.append(service)
        return service.definition()

    running = await start_service("shop", build, port=0, data_root=root,
                                  targets={"compliance": NOWHERE, "affiliate": NOWHERE, "gifts": NOWHERE,
                                           **(targets or {})})
    return Shop(running, built[0], root, clock)


def query(root: Path, sql: str, parameters: Sequence[object] = (), *,
          payments: bool = False) -> list[tuple[object, ...]]:
    """A read of the shop's store under `root` through a handle of its own, as a second replica would."""
    database = open_books(root) if payments else open_database("shop", MIGRATIONS, root=root)
    try:
        with database.reading() as tx:
            return [tuple(row) for row in tx.execute(sql, parameters).fetchall()]
    finally:
        database.close()


@pytest.fixture
async def shop(tmp_path: Path, database_engine: str) -> AsyncIterator[Shop]:  # noqa: F811 (the imported fixture)
    started = await start_shop(tmp_path)
    yield started
    await started.close()

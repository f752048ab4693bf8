"""Checkout through the running shop service, as a ratio to the traced kit echo.

    python -m tools.bench.checkout [--seconds 5] [--rounds 2] [--in-flight 64] [--buyers 2000]

Plaintext on loopback (`grpc_load.on_plaintext_loopback`). Two servers run as their own
processes, both built by the service kit with tracing on (every call a SERVER span), token
check and protovalidate; a load process (`tools.bench.grpc_load`) keeps `--in-flight` calls in
flight against one of them at a time, in interleaved rounds, best round of each:

- kit echo: a CheckoutRequest handler answering a fixed response (the baseline);
- Checkout: the whole shop, durable (synchronous=FULL, group commit): each call claims its
  request id, prices the line, applies the minors' rules, reserves stock with a conditional
  update and writes the order and its audit event (one unit of work), authorises the payment
  with the embedded provider (its own database, its own commit), and records the authorisation
  (a third unit). Audit events stay in the outbox: no compliance service runs here.

Every call is a new order (a fresh request id) from one of `--buyers` adult buyers, for one
unit of one product with enough stock for the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from limelight.shop.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    orders_pb2,
)

from libs.auth.principal import Role, birth_date_for_age
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.transport import ROUND_ROBIN
from libs.ports import reserve_port
from services.shop.server import build as build_shop
from tools.bench.grpc_load import (
    ECHO_METHOD,
    LoadResult,
    drive,
    interleaved_rounds,
    kit_echo,
    on_plaintext_loopback,
    print_result,
    ratio_table,
    serve_until_sigterm,
    spawn_server,
    stop_servers,
)

MODULE = "tools.bench.checkout"
KIT_ECHO = "kit echo (tracing, auth, validation)"
CHECKOUT = "Checkout (shop, durable)"
CHECKOUT_METHOD = "/limelight.shop.v1.OrderService/Checkout"
PRODUCT = "merchants/bench/products/drop"
PRICE = 1_990
STOCK = 1_000_000

_REPLY = orders_pb2.CheckoutResponse(order=orders_pb2.Order(name="users/b0/orders/o1")).SerializeToString()


def bearer(root: Path, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(subject, frozenset(roles or {Role.VIEWER}), birth_date=birth_date_for_age(30, dt.date.today()))
    return (("authorization", f"Bearer {mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=2))}"),)


async def serve(which: str, port: int) -> None:
    if which == "kit-echo":
        await serve_until_sigterm("bench-kit-echo", kit_echo(orders_pb2.CheckoutRequest, _REPLY), port)
    else:
        await serve_until_sigterm("shop", build_shop, port)


async def seed(target: str, root: Path) -> None:
    """One active product with stock for the whole run."""
    merchant = bearer(root, "users/bench", Role.MERCHANT)
    async with grpc.aio.insecure_channel(target) as channel:
        await catalog_pb2_grpc.CatalogServiceStub(channel).CreateProduct(catalog_pb2.CreateProductRequest(
            parent="merchants/bench", product_id="drop", product=catalog_pb2.Product(
                title="Bench drop", price_minor=PRICE, currency_code="EUR", type=catalog_pb2.PRODUCT_TYPE_DIGITAL,
                state=catalog_pb2.PRODUCT_STATE_ACTIVE, vat_rate_bps=1_900)), metadata=merchant)
        await inventory_pb2_grpc.InventoryServiceStub(channel).AdjustInventory(inventory_pb2.AdjustInventoryRequest(
            request_id=str(uuid.uuid4()), name=f"{PRODUCT}/variants/default/inventory", delta=STOCK,
            reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK), metadata=merchant)


async def load(target: str, method: str, in_flight: int, seconds: float, buyers: int) -> LoadResult:
    root = Path(os.environ["LIMELIGHT_DATA_DIR"])
    tokens = [bearer(root, f"users/b{index}") for index in range(buyers)]
    async with grpc.aio.insecure_channel(target, options=[ROUND_ROBIN]) as channel:
        call = channel.unary_unary(method, request_serializer=orders_pb2.CheckoutRequest.SerializeToString,
                                   response_deserializer=orders_pb2.CheckoutResponse.FromString)

        async def checkout(sequence: int) -> object:
            buyer = sequence % buyers
            request = orders_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()), buyer=f"users/b{buyer}",
                items=[orders_pb2.CheckoutItem(product=PRODUCT, quantity=1)],
                payment_method=orders_pb2.PaymentMethod(provider="local", token="tok_debit"),
                expected_total_minor=PRICE, currency_code="EUR")
            return await call(request, metadata=tokens[buyer], timeout=30)

        return await drive(checkout, in_flight=in_flight, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--buyers", type=int, default=2_000)
    arguments = parser.parse_args()
    on_plaintext_loopback()
    ports = {KIT_ECHO: reserve_port(), CHECKOUT: reserve_port()}
    targets = {label: f"127.0.0.1:{port}" for label, port in ports.items()}
    methods = {KIT_ECHO: ECHO_METHOD, CHECKOUT: CHECKOUT_METHOD}
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-checkout-") as scratch:
        root = Path(scratch)
        os.environ["LIMELIGHT_DATA_DIR"] = str(root)  # the platform key the tokens are signed with
        # No compliance runs here: audit events stay, durably, in the shop's outbox.
        os.environ["LIMELIGHT_SHOP_AUDIT_SHIPPING"] = "off"
        servers = {KIT_ECHO: spawn_server(MODULE, "kit-echo", ports[KIT_ECHO], root),
                   CHECKOUT: spawn_server(MODULE, "shop", ports[CHECKOUT], root)}
        try:
            asyncio.run(seed(targets[CHECKOUT], root))
            best = interleaved_rounds(MODULE, servers, targets, methods, str(arguments.in_flight),
                                      str(arguments.seconds), str(arguments.buyers), rounds=arguments.rounds)
        finally:
            stop_servers(servers)
    print(f"Checkout vs kit echo, plaintext loopback, tracing on, {arguments.in_flight} in flight, "
          f"{arguments.seconds:.0f} s per run, best of {arguments.rounds} interleaved rounds, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    print(ratio_table(list(best.items()), best[KIT_ECHO]))
    ratio = best[CHECKOUT].per_second / best[KIT_ECHO].per_second
    print(f"Checkout / kit echo: {ratio:.2f}x throughput (target >= 0.5x)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        print_result(asyncio.run(load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]),
                                      int(sys.argv[6]))))
    else:
        main()

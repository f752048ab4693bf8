"""Checkout and orders end to end: a real shop server, real channels and tokens, a moved clock."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from limelight.privacy.v1 import subject_data_pb2, subject_data_pb2_grpc
from limelight.shop.v1 import catalog_pb2, inventory_pb2, live_pins_pb2, orders_pb2

from libs.auth.principal import Role
from libs.kit.testing import error_info, status_detail
from services.shop.conftest import Shop
from services.shop.model import Refund
from services.shop.usecases import subject_data


async def _refusal(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    info = error_info(raised.value)
    return raised.value.code(), info.reason, dict(info.metadata)


async def _order(shop: Shop, buyer: str = "ada", price: int = 2_000, quantity: int = 1,
                 **fields: str) -> orders_pb2.Order:
    product = await shop.product(f"p-{uuid.uuid4().hex[:8]}", price=price, stock=10)
    response = await shop.orders.Checkout(shop.checkout_request(buyer, product.name, quantity,
                                                                total=price * quantity, **fields),
                                          metadata=shop.auth(f"users/{buyer}"))
    return response.order


def _stock(shop: Shop, variant: str) -> tuple[int, int, int]:
    [(on_hand, reserved, sold)] = shop.query("SELECT on_hand, reserved, sold FROM stock WHERE variant = ?", (variant,))
    return int(str(on_hand)), int(str(reserved)), int(str(sold))


async def test_a_checkout_reserves_stock_authorises_and_prices_with_vat(shop: Shop) -> None:
    order = await _order(shop, price=11_900)
    assert order.state == orders_pb2.ORDER_STATE_RESERVED
    assert order.payment.state == orders_pb2.PAYMENT_STATE_AUTHORIZED and order.payment.authorized_minor == 11_900
    assert order.total_minor == 11_900 and order.tax_minor == 1_900  # 19 % included
    assert _stock(shop, f"{order.lines[0].product}/variants/default") == (10, 1, 0)


async def test_a_retried_checkout_returns_the_first_order_and_a_changed_one_is_refused(shop: Shop) -> None:
    product = await shop.product("mug", price=900, stock=5)
    request = shop.checkout_request("ada", product.name, 2, total=1_800)
    first = await shop.orders.Checkout(request, metadata=shop.auth("users/ada"))
    again = await shop.orders.Checkout(request, metadata=shop.auth("users/ada"))
    assert again.order == first.order
    assert _stock(shop, product.variants[0].name) == (5, 2, 0)
    changed = orders_pb2.CheckoutRequest()
    changed.CopyFrom(request)
    changed.items[0].quantity = 3
    changed.expected_total_minor = 2_700
    code, reason, metadata = await _refusal(shop.orders.Checkout(changed, metadata=shop.auth("users/ada")))
    assert (code, reason, metadata["field"]) == (grpc.StatusCode.FAILED_PRECONDITION, "REQUEST_ID_REUSED", "request_id")


async def test_a_declined_payment_releases_the_stock_and_its_retry_is_declined_again(shop: Shop) -> None:
    product = await shop.product("lamp", price=4_000, stock=3)
    request = shop.checkout_request("ada", product.name, total=4_000, token="decline_card")
    for _ in range(2):
        code, reason, _ = await _refusal(shop.orders.Checkout(request, metadata=shop.auth("users/ada")))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_DECLINED")
    assert _stock(shop, product.variants[0].name) == (3, 0, 0)


async def test_capture_fulfil_and_partial_then_full_refund_with_restock(shop: Shop) -> None:
    order = await _order(shop, price=1_000, quantity=4)
    variant = f"{order.lines[0].product}/variants/default"
    capture = orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()), name=order.name)
    paid = (await shop.orders.CaptureOrder(capture, metadata=shop.auth("users/ada"))).order
    assert paid.state == orders_pb2.ORDER_STATE_PAID and paid.payment.captured_minor == 4_000
    assert (await shop.orders.CaptureOrder(capture, metadata=shop.auth("users/ada"))).order.state == paid.state
    assert _stock(shop, variant) == (10, 0, 4)
    fulfilled = (await shop.orders.FulfillOrder(orders_pb2.FulfillOrderRequest(
        request_id=str(uuid.uuid4()), name=order.name, fulfillment=orders_pb2.Fulfillment(carrier="DHL")),
        metadata=shop.merchant())).order
    assert fulfilled.state == orders_pb2.ORDER_STATE_FULFILLED
    partial = orders_pb2.RefundOrderRequest(request_id=str(uuid.uuid4()), name=order.name, reason="damaged",
                                            restock=True,
                                            items=[orders_pb2.CheckoutItem(product=order.lines[0].product, quantity=1)])
    refunded = await shop.orders.RefundOrder(partial, metadata=shop.merchant())
    assert refunded.refund.amount_minor == 1_000 and refunded.order.payment.refunded_minor == 1_000
    assert refunded.order.payment.state == orders_pb2.PAYMENT_STATE_PARTIALLY_REFUNDED
    assert (await shop.orders.RefundOrder(partial, metadata=shop.merchant())).order.payment.refunded_minor == 1_000
    assert _stock(shop, variant) == (10, 0, 3)
    rest = await shop.orders.RefundOrder(orders_pb2.RefundOrderRequest(
        request_id=str(uuid.uuid4()), name=order.name, reason="returned"), metadata=shop.merchant())
    assert rest.order.state == orders_pb2.ORDER_STATE_REFUNDED and rest.refund.amount_minor == 3_000
    assert _stock(shop, variant) == (10, 0, 3)  # not restocked: the units did not come back
    code, reason, _ = await _refusal(shop.orders.RefundOrder(orders_pb2.RefundOrderRequest(
        request_id=str(uuid.uuid4()), name=order.name, reason="again"), metadata=shop.merchant()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_STATE_CONFLICT")


async def test_cancel_before_capture_voids_and_releases_and_a_paid_order_cannot_be_cancelled(shop: Shop) -> None:
    order = await _order(shop)
    variant = f"{order.lines[0].product}/variants/default"
    cancel = orders_pb2.CancelOrderRequest(request_id=str(uuid.uuid4()), name=order.name,
                                           reason=orders_pb2.CANCEL_REASON_BUYER_REQUESTED)
    cancelled = (await shop.orders.CancelOrder(cancel, metadata=shop.auth("users/ada"))).order
    assert cancelled.state == orders_pb2.ORDER_STATE_CANCELLED
    assert cancelled.payment.state == orders_pb2.PAYMENT_STATE_VOIDED
    assert (await shop.orders.CancelOrder(cancel, metadata=shop.auth("users/ada"))).order.state == cancelled.state
    assert _stock(shop, variant) == (10, 0, 0)
    code, reason, _ = await _refusal(shop.orders.CaptureOrder(orders_pb2.CaptureOrderRequest(
        request_id=str(uuid.uuid4()), name=order.name), metadata=shop.auth("users/ada")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_STATE_CONFLICT")

    paid = await _order(shop)
    await shop.orders.CaptureOrder(orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()), name=paid.name),
                                   metadata=shop.auth("users/ada"))
    code, reason, metadata = await _refusal(shop.orders.CancelOrder(orders_pb2.CancelOrderRequest(
        request_id=str(uuid.uuid4()), name=paid.name, reason=orders_pb2.CANCEL_REASON_BUYER_REQUESTED),
        metadata=shop.auth("users/ada")))
    assert (code, reason, metadata["state"]) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_STATE_CONFLICT", "PAID")


async def test_a_lapsed_order_is_cancelled_by_capture_and_by_the_sweep(shop: Shop) -> None:
    late = await _order(shop)
    swept = await _order(shop)
    shop.clock.advance(dt.timedelta(minutes=16))
    code, reason, _ = await _refusal(shop.orders.CaptureOrder(orders_pb2.CaptureOrderRequest(
        request_id=str(uuid.uuid4()), name=late.name), metadata=shop.auth("users/ada")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AUTHORIZATION_EXPIRED")
    await shop.service.sweep()
    for order in (late, swept):
        found = (await shop.orders.GetOrder(orders_pb2.GetOrderRequest(name=order.name),
                                            metadata=shop.auth("users/ada"))).order
        assert found.state == orders_pb2.ORDER_STATE_CANCELLED and found.cancel_reason == orders_pb2.CANCEL_REASON_EXPIRED
        assert _stock(shop, f"{order.lines[0].product}/variants/default") == (10, 0, 0)


async def test_a_reservation_expires_by_the_clock_and_returns_its_stock(shop: Shop) -> None:
    product = await shop.product("hoodie", price=5_000, stock=2)
    reserve = inventory_pb2.ReserveStockRequest(request_id=str(uuid.uuid4()), product=product.name, quantity=2,
                                                holder="users/ada", ttl=duration_pb2.Duration(seconds=30))
    held = (await shop.inventory.ReserveStock(reserve, metadata=shop.auth("users/ada"))).reservation
    assert (await shop.stock(product.variants[0].name)).available == 0
    code, reason, metadata = await _refusal(shop.orders.Checkout(
        shop.checkout_request("bob", product.name, total=5_000), metadata=shop.auth("users/bob")))
    assert (code, reason, metadata["available"]) == (grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_STOCK", "0")
    shop.clock.advance(dt.timedelta(seconds=31))
    await shop.service.sweep()
    again = await shop.inventory.GetReservation(inventory_pb2.GetReservationRequest(name=held.name),
                                                metadata=shop.auth("users/ada"))
    assert again.reservation.state == inventory_pb2.RESERVATION_STATE_EXPIRED
    assert (await shop.stock(product.variants[0].name)).available == 2


async def test_an_expired_hold_does_not_block_a_buyer_even_before_the_sweep(shop: Shop) -> None:
    product = await shop.product("scarf", price=3_000, stock=1)
    await shop.inventory.ReserveStock(inventory_pb2.ReserveStockRequest(
        request_id=str(uuid.uuid4()), product=product.name, quantity=1, holder="users/ada",
        ttl=duration_pb2.Duration(seconds=30)), metadata=shop.auth("users/ada"))
    shop.clock.advance(dt.timedelta(seconds=31))
    order = (await shop.orders.Checkout(shop.checkout_request("bob", product.name, total=3_000),
                                        metadata=shop.auth("users/bob"))).order
    assert order.state == orders_pb2.ORDER_STATE_RESERVED


async def test_stock_cannot_be_adjusted_below_what_is_reserved_and_sold(shop: Shop) -> None:
    order = await _order(shop, quantity=3)
    variant = f"{order.lines[0].product}/variants/default"
    code, reason, metadata = await _refusal(shop.inventory.AdjustInventory(inventory_pb2.AdjustInventoryRequest(
        request_id=str(uuid.uuid4()), name=f"{variant}/inventory", delta=-8,
        reason=inventory_pb2.ADJUSTMENT_REASON_DAMAGED_OR_LOST), metadata=shop.merchant()))
    assert (code, reason, metadata["committed"]) == (grpc.StatusCode.FAILED_PRECONDITION, "STOCK_BELOW_COMMITTED", "3")
    adjusted = await shop.restock(variant, -7)
    assert (adjusted.on_hand, adjusted.reserved, adjusted.available) == (3, 3, 0)


async def test_only_the_merchant_changes_its_catalogue(shop: Shop) -> None:
    product = await shop.product("vase", price=2_500)
    update = catalog_pb2.UpdateProductRequest(product=product)
    update.product.price_minor = 2_000
    update.update_mask.paths.append("price_minor")
    for metadata in (shop.auth("users/rival", Role.MERCHANT), shop.auth("users/acme")):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await shop.catalog.UpdateProduct(update, metadata=metadata)
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    changed = await shop.catalog.UpdateProduct(update, metadata=shop.merchant())
    assert changed.product.price_minor == 2_000 and changed.product.title == product.title
    code, reason, _ = await _refusal(shop.orders.Checkout(shop.checkout_request("ada", product.name, total=2_500),
                                                          metadata=shop.auth("users/ada")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PRICE_CHANGED")


async def test_drafts_are_the_merchants_own_and_lists_page_and_search(shop: Shop) -> None:
    await shop.product("draft-one", state=catalog_pb2.PRODUCT_STATE_DRAFT)
    for index in range(3):
        await shop.product(f"blue-shirt-{index}", title=f"Blue shirt {index}")
    await shop.product("red-hat", title="Red hat")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shop.catalog.GetProduct(catalog_pb2.GetProductRequest(name="merchants/acme/products/draft-one"),
                                      metadata=shop.auth("users/ada"))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    first = await shop.catalog.ListProducts(catalog_pb2.ListProductsRequest(parent="merchants/-", query="BLUE shirt",
                                                                            page_size=2), metadata=shop.auth("users/ada"))
    second = await shop.catalog.ListProducts(catalog_pb2.ListProductsRequest(
        parent="merchants/-", query="BLUE shirt", page_size=2, page_token=first.next_page_token),
        metadata=shop.auth("users/ada"))
    titles = [p.title for p in [*first.products, *second.products]]
    assert titles == ["Blue shirt 2", "Blue shirt 1", "Blue shirt 0"] and not second.next_page_token
    own = await shop.catalog.ListProducts(catalog_pb2.ListProductsRequest(parent="merchants/acme"),
                                          metadata=shop.merchant())
    assert "Product draft-one" in [p.title for p in own.products]
    code, reason, _ = await _refusal(shop.catalog.ListProducts(catalog_pb2.ListProductsRequest(
        parent="merchants/-", query="red", page_token=first.next_page_token), metadata=shop.auth("users/ada")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


async def test_a_product_with_variants_needs_the_variant_named(shop: Shop) -> None:
    product = await shop.product("tee", price=1_500, variants=[
        catalog_pb2.Variant(variant_id="s", attributes={"size": "S"}),
        catalog_pb2.Variant(variant_id="xl", attributes={"size": "XL"}, price_minor=1_800)])
    for variant in product.variants:
        await shop.restock(variant.name, 5)
    code, reason, _ = await _refusal(shop.orders.Checkout(shop.checkout_request("ada", product.name, total=1_500),
                                                          metadata=shop.auth("users/ada")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VARIANT_REQUIRED")
    request = shop.checkout_request("ada", product.name, total=1_800)
    request.items[0].variant = "xl"
    order = (await shop.orders.Checkout(request, metadata=shop.auth("users/ada"))).order
    assert order.lines[0].variant == "xl" and order.lines[0].unit_price_minor == 1_800
    assert (await shop.stock(product.variants[1].name)).available == 4


async def test_nobody_buys_for_someone_else(shop: Shop) -> None:
    product = await shop.product("pen", price=500, stock=5)
    code, reason, _ = await _refusal(shop.orders.Checkout(shop.checkout_request("ada", product.name, total=500),
                                                          metadata=shop.auth("users/mallory")))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_BUYER")


async def test_shipping_details_are_sealed_in_the_store_and_opened_for_the_buyer(shop: Shop) -> None:
    order = await _order(shop, shipping_address="addresses/home-1", recipient_name="Ada Lovelace")
    assert (order.shipping_address, order.recipient_name) == ("addresses/home-1", "Ada Lovelace")
    [(address, recipient)] = shop.query("SELECT shipping_address_sealed, recipient_name_sealed FROM orders")
    assert isinstance(address, bytes) and isinstance(recipient, bytes)
    assert b"Ada" not in recipient and b"home-1" not in address


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: setattr(r, "request_id", "not-a-uuid"), "request_id"),
    (lambda r: setattr(r, "buyer", "people/ada"), "buyer"),
    (lambda r: r.items[0].__setattr__("quantity", 0), "items[0].quantity"),
    (lambda r: r.items[0].__setattr__("product", "products/x"), "items[0].product"),
    (lambda r: setattr(r, "currency_code", "euro"), "currency_code"),
    (lambda r: setattr(r, "expected_total_minor", 0), "expected_total_minor"),
    (lambda r: r.ClearField("payment_method"), "payment_method"),
    (lambda r: setattr(r, "affiliate_visitor_id", "short"), "affiliate_visitor_id"),
    (lambda r: setattr(r, "live", "lives/l1"), "live"),
])
@pytest.mark.parametrize("database_engine", ["sqlite"], indirect=True)  # refused before the store: one engine is enough
async def test_a_malformed_checkout_is_invalid_argument_naming_the_field(shop: Shop, mutate: object,
                                                                          field: str) -> None:
    request = shop.checkout_request("ada", "merchants/acme/products/x", total=100)
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shop.orders.Checkout(request, metadata=shop.auth("users/ada"))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = status_detail(raised.value, error_details_pb2.BadRequest).field_violations
    assert [violation.field for violation in violations] == [field]


@pytest.mark.parametrize(("call", "message", "field"), [
    ("AdjustInventory", inventory_pb2.AdjustInventoryRequest(
        request_id=str(uuid.uuid4()), name="merchants/acme/products/x/inventory", delta=1,
        reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK), "name"),
    ("AdjustInventory", inventory_pb2.AdjustInventoryRequest(
        request_id=str(uuid.uuid4()), name="merchants/acme/products/x/variants/v/inventory", delta=0,
        reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK), "delta"),
    ("ReserveStock", inventory_pb2.ReserveStockRequest(
        request_id=str(uuid.uuid4()), product="merchants/acme/products/x", quantity=1, holder="users/ada",
        ttl=duration_pb2.Duration(seconds=5)), "ttl"),
    ("CreateProduct", catalog_pb2.CreateProductRequest(parent="merchants/acme", product=catalog_pb2.Product(
        title="x", price_minor=100, currency_code="EUR", type=catalog_pb2.PRODUCT_TYPE_PHYSICAL,
        vat_rate_bps=20_000)), "product.vat_rate_bps"),
    ("CreateProduct", catalog_pb2.CreateProductRequest(parent="merchants/acme", product=catalog_pb2.Product(
        title="x", price_minor=100, currency_code="EUR", type=catalog_pb2.PRODUCT_TYPE_PHYSICAL,
        image_uris=["ftp://x"])), "product.image_uris[0]"),
    ("CreateProduct", catalog_pb2.CreateProductRequest(parent="merchants/acme", product=catalog_pb2.Product(
        title="x", price_minor=100, currency_code="EUR", type=catalog_pb2.PRODUCT_TYPE_BUNDLE)),
        "product.bundle_components"),
])
async def test_malformed_catalogue_and_stock_calls_name_the_field(shop: Shop, call: str, message: object,
                                                                  field: str) -> None:
    stub = shop.inventory if call in ("AdjustInventory", "ReserveStock") else shop.catalog
    metadata = shop.merchant() if call != "ReserveStock" else shop.auth("users/ada")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, call)(message, metadata=metadata)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = status_detail(raised.value, error_details_pb2.BadRequest).field_violations
    assert [violation.field for violation in violations] == [field]


async def test_a_buyers_export_opens_their_details_and_erasure_keeps_the_order_without_them(shop: Shop) -> None:
    assert shop.service.context is not None
    order = await _order(shop, buyer="erin", shipping_address="addresses/flat-2", recipient_name="Erin Example")
    exported = await subject_data.export_subject_data(shop.service.context, shop.service.store, "erin")
    orders: list[dict[str, str]] = exported["orders"]  # type: ignore[assignment]
    assert [(o["order_id"], o["shipping_address"], o["recipient_name"]) for o in orders] == \
        [(order.name.rsplit("/", 1)[1], "addresses/flat-2", "Erin Example")]
    erasure = await subject_data.erase_subject_data(shop.service.store, "erin")
    assert "1 orders" in erasure.summary
    assert [(kept.data_category, kept.legal_basis) for kept in erasure.kept] == [subject_data.ORDERS_KEPT,
                                                                                subject_data.CONSENTS_KEPT]
    after = (await shop.orders.GetOrder(orders_pb2.GetOrderRequest(name=order.name),
                                        metadata=shop.auth("users/erin"))).order
    assert after.total_minor == order.total_minor and (after.shipping_address, after.recipient_name) == ("", "")


async def test_a_refund_the_provider_made_before_a_crash_is_finished_by_the_sweep(shop: Shop) -> None:
    order = await _order(shop, price=1_000, quantity=2)
    await shop.orders.CaptureOrder(orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()), name=order.name),
                                   metadata=shop.auth("users/ada"))
    lost = Refund(str(uuid.uuid4()), ((order.lines[0].product, "default", 1),), 1_000, "lost", shop.clock())
    await shop.service.store.run(lambda unit: unit.record_refund_intent(order.name, lost, True))  # then the crash
    shop.clock.advance(dt.timedelta(minutes=2))
    await shop.service.sweep()
    found = (await shop.orders.GetOrder(orders_pb2.GetOrderRequest(name=order.name),
                                        metadata=shop.auth("users/ada"))).order
    assert found.payment.refunded_minor == 1_000 and [r.request_id for r in found.refunds] == [lost.request_id]
    assert _stock(shop, f"{order.lines[0].product}/variants/default") == (10, 0, 1)
    assert shop.query("SELECT refunded_minor FROM authorizations WHERE payment_key = ?", (order.name,),
                      payments=True) == [(1_000,)]
    code, reason, _ = await _refusal(shop.orders.RefundOrder(orders_pb2.RefundOrderRequest(
        request_id=str(uuid.uuid4()), name=order.name, reason="too many",
        items=[orders_pb2.CheckoutItem(product=order.lines[0].product, quantity=2)]), metadata=shop.merchant()))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REFUND_EXCEEDS_ORDER")


def _audit_actions(shop: Shop) -> list[tuple[str, str, str]]:
    records = [json.loads(str(record)) for (record,) in shop.query("SELECT record FROM audit_outbox ORDER BY position")]
    return [(record["action"], record["outcome"], record.get("reason", "")) for record in records]


async def test_every_transition_and_refusal_is_an_audit_event_stored_with_it(shop: Shop) -> None:
    product = await shop.product("ticket", price=2_500, stock=1)
    order = (await shop.orders.Checkout(shop.checkout_request("ada", product.name, total=2_500),
                                        metadata=shop.auth("users/ada"))).order
    with pytest.raises(grpc.aio.AioRpcError):
        await shop.orders.Checkout(shop.checkout_request("bob", product.name, total=2_500),
                                   metadata=shop.auth("users/bob"))
    await shop.orders.CaptureOrder(orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()), name=order.name),
                                   metadata=shop.auth("users/ada"))
    actions = _audit_actions(shop)
    assert actions[:2] == [("shop.CreateProduct", "succeeded", ""), ("shop.AdjustInventory", "succeeded", "")]
    assert actions[2:] == [("shop.Checkout", "succeeded", ""), ("shop.AuthorizePayment", "succeeded", ""),
                           ("shop.Checkout", "rejected", "OUT_OF_STOCK"), ("shop.CaptureOrder", "succeeded", "")]


@pytest.mark.parametrize(("flash", "end_minutes", "field"), [(2_000, 5, "flash_price_minor"),
                                                             (500, -1, "end_time")])
async def test_a_pin_with_a_flash_price_not_below_the_price_or_an_end_in_the_past_names_the_field(
        shop: Shop, flash: int, end_minutes: int, field: str) -> None:
    product = await shop.product(f"pin-{field.replace('_', '-')}", price=2_000, stock=1)
    request = live_pins_pb2.PinProductRequest(parent="creators/ada/lives/l1", product=product.name,
                                              flash_price_minor=flash)
    request.end_time.FromDatetime(shop.clock() + dt.timedelta(minutes=end_minutes))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shop.pins.PinProduct(request, metadata=shop.auth("users/ada", Role.CREATOR))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = status_detail(raised.value, error_details_pb2.BadRequest).field_violations
    assert [violation.field for violation in violations] == [field]


async def test_stock_calls_are_idempotent_by_request_id_and_a_reused_id_is_refused(shop: Shop) -> None:
    product = await shop.product("poster", price=1_200)
    variant = product.variants[0].name
    adjust = inventory_pb2.AdjustInventoryRequest(request_id=str(uuid.uuid4()), name=f"{variant}/inventory", delta=5,
                                                  reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK)
    for _ in range(2):
        assert (await shop.inventory.AdjustInventory(adjust, metadata=shop.merchant())).inventory.on_hand == 5
    reserve = inventory_pb2.ReserveStockRequest(request_id=adjust.request_id, product=product.name, quantity=1,
                                                holder="users/ada")
    code, reason, metadata = await _refusal(shop.inventory.ReserveStock(reserve, metadata=shop.auth("users/ada")))
    assert (code, reason, metadata["first_use"]) == (grpc.StatusCode.FAILED_PRECONDITION, "REQUEST_ID_REUSED",
                                                     "AdjustInventory")
    reserve.request_id = str(uuid.uuid4())
    first = (await shop.inventory.ReserveStock(reserve, metadata=shop.auth("users/ada"))).reservation
    assert (await shop.inventory.ReserveStock(reserve, metadata=shop.auth("users/ada"))).reservation == first
    release = inventory_pb2.ReleaseReservationRequest(request_id=str(uuid.uuid4()), name=first.name)
    for _ in range(2):
        released = (await shop.inventory.ReleaseReservation(release, metadata=shop.auth("users/ada"))).reservation
        assert released.state == inventory_pb2.RESERVATION_STATE_RELEASED
    assert (await shop.stock(variant)).available == 5


async def test_compliance_gathers_a_buyers_export_and_runs_the_erasure_step_over_the_shared_service(
        shop: Shop) -> None:
    order = await _order(shop, buyer="finn", shipping_address="addresses/office", recipient_name="Finn Example")
    stub = subject_data_pb2_grpc.SubjectDataServiceStub(shop.channel)
    compliance = shop.auth("services/compliance", Role.SERVICE)
    exported = await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(subject="users/finn"),
                                            metadata=compliance)
    assert exported.export.service == "services/shop"
    [held] = json.loads(exported.export.json)["orders"]
    assert (held["order_id"], held["recipient_name"]) == (order.name.rsplit("/", 1)[1], "Finn Example")
    erased = await stub.EraseSubjectData(subject_data_pb2.EraseSubjectDataRequest(subject="users/finn"),
                                         metadata=compliance)
    assert [kept.data_category for kept in erased.erasure.retained] == ["shop.orders", "shop.parental_consents"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(subject="users/finn"),
                                     metadata=shop.auth("users/finn"))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED

"""Purchases by minors (§§ 104-113 BGB and the platform's caps): every rule refuses with its reason."""

from __future__ import annotations

import uuid

import grpc
import pytest
from limelight.shop.v1 import catalog_pb2, orders_pb2

from libs.auth.principal import Role
from libs.kit.testing import error_info
from services.shop.conftest import Shop
from services.shop.usecases import subject_data


async def _checkout(shop: Shop, product: catalog_pb2.Product, *, age: int | None, buyer: str = "kid",
                    quantity: int = 1, token: str = "tok_debit") -> orders_pb2.Order:
    request = shop.checkout_request(buyer, product.name, quantity, total=product.price_minor * quantity, token=token)
    return (await shop.orders.Checkout(request, metadata=shop.auth(f"users/{buyer}", age=age))).order


async def _refused(shop: Shop, product: catalog_pb2.Product, **kwargs: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _checkout(shop, product, **kwargs)  # type: ignore[arg-type]
    return raised.value.code(), error_info(raised.value).reason


async def _consent(shop: Shop, user: str, granted: bool) -> orders_pb2.SpendingLimits:
    response = await shop.orders.RecordParentalConsent(orders_pb2.RecordParentalConsentRequest(
        request_id=str(uuid.uuid4()), minor=f"users/{user}", granted=granted, evidence_reference="case-4711"),
        metadata=shop.auth("users/ops", Role.ADMIN))
    return response.spending_limits


@pytest.mark.parametrize(("age", "token", "kind", "minimum_age", "reason"), [
    (6, "tok_debit", catalog_pb2.PRODUCT_TYPE_PHYSICAL, 0, "BUYER_UNDER_7"),
    (None, "tok_debit", catalog_pb2.PRODUCT_TYPE_PHYSICAL, 0, "BUYER_AGE_UNKNOWN"),
    (12, "credit_visa", catalog_pb2.PRODUCT_TYPE_PHYSICAL, 0, "MINOR_CREDIT_NOT_ALLOWED"),
    (16, "paylater_klarna", catalog_pb2.PRODUCT_TYPE_PHYSICAL, 0, "MINOR_CREDIT_NOT_ALLOWED"),
    (16, "tok_debit", catalog_pb2.PRODUCT_TYPE_SUBSCRIPTION, 0, "SUBSCRIPTION_NOT_ALLOWED_FOR_MINOR"),
    (16, "tok_debit", catalog_pb2.PRODUCT_TYPE_PHYSICAL, 18, "PRODUCT_AGE_RESTRICTED"),
])
async def test_each_rule_refuses_with_its_own_reason(shop: Shop, age: int | None, token: str, kind: int,
                                                     minimum_age: int, reason: str) -> None:
    product = await shop.product(f"p-{uuid.uuid4().hex[:6]}", price=1_000, stock=5, type=kind,
                                 minimum_age=minimum_age)
    assert await _refused(shop, product, age=age, token=token) == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    assert (await shop.stock(product.variants[0].name)).available == 5


async def test_adults_may_pay_on_credit_and_buy_subscriptions(shop: Shop) -> None:
    product = await shop.product("streaming", price=999, stock=5, type=catalog_pb2.PRODUCT_TYPE_SUBSCRIPTION)
    order = await _checkout(shop, product, age=30, buyer="adult", token="credit_visa")
    assert order.state == orders_pb2.ORDER_STATE_RESERVED


async def test_a_minor_stays_under_the_per_order_and_monthly_caps(shop: Shop) -> None:
    cheap = await shop.product("sticker", price=4_000, stock=10)
    dear = await shop.product("console", price=6_000, stock=10)
    assert await _refused(shop, dear, age=12) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                  "MINOR_TRANSACTION_CAP_EXCEEDED")
    await _checkout(shop, cheap, age=12)
    await _checkout(shop, cheap, age=12)
    assert await _refused(shop, cheap, age=12) == (grpc.StatusCode.FAILED_PRECONDITION, "MINOR_MONTHLY_CAP_EXCEEDED")
    limits = (await shop.orders.GetSpendingLimits(orders_pb2.GetSpendingLimitsRequest(
        name="users/kid/spendingLimits"), metadata=shop.auth("users/kid", age=12))).spending_limits
    assert (limits.minor, limits.may_purchase, limits.parental_consent) == (True, True, False)
    assert (limits.per_transaction_cap_minor, limits.monthly_cap_minor, limits.spent_this_month_minor) == \
        (5_000, 10_000, 8_000)
    assert not limits.subscriptions_allowed and not limits.credit_allowed


async def test_above_the_caps_only_with_consent_on_record_before_capture(shop: Shop) -> None:
    dear = await shop.product("bike", price=20_000, stock=3)
    granted = await _consent(shop, "teen", True)
    assert granted.parental_consent
    order = await _checkout(shop, dear, age=15, buyer="teen")
    assert order.parental_consent_required
    await _consent(shop, "teen", False)
    capture = orders_pb2.CaptureOrderRequest(request_id=str(uuid.uuid4()), name=order.name)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shop.orders.CaptureOrder(capture, metadata=shop.auth("users/teen", age=15))
    assert error_info(raised.value).reason == "PARENTAL_CONSENT_REQUIRED"
    await _consent(shop, "teen", True)
    paid = await shop.orders.CaptureOrder(capture, metadata=shop.auth("users/teen", age=15))
    assert paid.order.state == orders_pb2.ORDER_STATE_PAID


async def test_only_operators_and_officers_record_parental_consent(shop: Shop) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await shop.orders.RecordParentalConsent(orders_pb2.RecordParentalConsentRequest(
            request_id=str(uuid.uuid4()), minor="users/kid", granted=True, evidence_reference="x"),
            metadata=shop.auth("users/kid", age=12))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    officer = await shop.orders.RecordParentalConsent(orders_pb2.RecordParentalConsentRequest(
        request_id=str(uuid.uuid4()), minor="users/kid", granted=True, evidence_reference="x"),
        metadata=shop.auth("users/officer", Role.COMPLIANCE_OFFICER))
    assert officer.spending_limits.parental_consent


async def test_a_minors_export_holds_the_parental_consent_records(shop: Shop) -> None:
    await _consent(shop, "kid", True)
    await _consent(shop, "kid", False)
    assert shop.service.context is not None
    exported = await subject_data.export_subject_data(shop.service.context, shop.service.store, "kid")
    consents: list[dict[str, object]] = exported["parental_consents"]  # type: ignore[assignment]
    assert [(c["granted"], c["evidence_reference"]) for c in consents] == [(True, "case-4711"), (False, "case-4711")]

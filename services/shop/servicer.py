"""The shop over gRPC: handlers only translate (proto -> command -> use case -> proto).

Who may call is decided twice: the kit's role rules (`server.ACCESS`) refuse callers without a
possible role, and the use cases admit exactly the callers the proto comments name, from the
verified principal (`caller_of`), never from the shape of a name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from dataclasses import replace
from typing import Any

import grpc
from limelight.shop.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    live_pins_pb2,
    live_pins_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)

from libs.audit.client import AuditClient
from libs.audit.events import Outcome
from libs.audit.outbox import TracedEvent
from libs.auth.principal import AgeBracket, Principal, Role
from libs.clock import utc_now
from libs.errors import InvalidArgument, NotFound, PermissionDenied
from libs.kit.context import current_principal
from libs.pagination import PageTokens, page_size
from libs.privacy.subject_data import Erasure
from services.shop import messages
from services.shop.model import LIVE, MERCHANT, ORDER, PRODUCT, RESERVATION, SPENDING_LIMITS, USER, Order
from services.shop.store import ShopStore
from services.shop.usecases import catalogue, inventory, minors, orders, pins, subject_data
from services.shop.usecases.ports import Caller, ShopContext

Call = grpc.aio.ServicerContext[Any, Any]

PRODUCTS = PageTokens("shop.ListProducts")
ORDERS = PageTokens("shop.ListOrders")
PINS = PageTokens("shop.ListLivePins")

_BRACKET_AGES = {AgeBracket.UNDER_7: 6, AgeBracket.FROM_7_TO_15: 7, AgeBracket.FROM_16_TO_17: 16,
                 AgeBracket.ADULT: 18}


def caller_of(principal: Principal, today: dt.date) -> Caller:
    """The caller as the use cases see it: the user it is or acts for, and that user's age from
    their own verified token (the exact birth date, else the lower bound of the age bracket)."""
    user_principal = principal.on_behalf_of if principal.on_behalf_of is not None else \
        (None if principal.is_service else principal)
    age = None
    if user_principal is not None:
        age = user_principal.age_on(today)
        if age is None:
            age = _BRACKET_AGES.get(user_principal.age_bracket)
    return Caller(subject=principal.subject, user=principal.user_id,
                  merchant=(user_principal or principal).has_role(Role.MERCHANT), service=principal.is_service,
                  operator=principal.has_role(Role.ADMIN), officer=principal.has_role(Role.COMPLIANCE_OFFICER),
                  age=age)


class KitAuditEvents:
    """`ports.AuditEvents` through the shared audit client, on the request's task."""

    def __init__(self, audit: AuditClient) -> None:
        self._audit = audit

    def event(self, action: str, resource: str, *, subject: str = "",
              attributes: dict[str, str] | None = None) -> object:
        return self._audit.new_event(action=action, resource=resource, outcome=Outcome.SUCCEEDED, subject=subject,
                                     attributes=attributes)

    def then(self, earlier: object, action: str, *, attributes: dict[str, str] | None = None) -> object:
        assert isinstance(earlier, TracedEvent)
        event = dataclasses.replace(earlier.event, event_id=str(uuid.uuid4()), action=action, event_time=utc_now(),
                                    attributes=attributes or {})
        return TracedEvent(event, earlier.trace_context)


class _Handlers:
    def __init__(self, ctx: ShopContext, store: ShopStore) -> None:
        self._ctx = ctx
        self._store = store

    def _caller(self) -> Caller:
        return caller_of(current_principal(), self._ctx.clock().date())


class CatalogServicer(_Handlers, catalog_pb2_grpc.CatalogServiceServicer):
    async def CreateProduct(self, request: catalog_pb2.CreateProductRequest,
                            context: Call) -> catalog_pb2.CreateProductResponse:
        product = await catalogue.create_product(self._ctx, self._caller(), messages.product_in(request, self._ctx.clock))
        return catalog_pb2.CreateProductResponse(product=messages.product_out(product))

    async def GetProduct(self, request: catalog_pb2.GetProductRequest, context: Call) -> catalog_pb2.GetProductResponse:
        PRODUCT.parse(request.name, field="name")
        found = await self._ctx.store.read(lambda unit: unit.product(request.name))
        product = catalogue.visible_product(self._caller(), found, request.name)
        return catalog_pb2.GetProductResponse(product=messages.product_out(product))

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest,
                           context: Call) -> catalog_pb2.ListProductsResponse:
        merchant = MERCHANT.parse(request.parent, field="parent", wildcard=True)["merchant"]
        state = messages.product_state_in(request.state)
        words = request.query.split()
        scope = f"{request.parent}|{request.state}|{' '.join(w.lower() for w in words)}"
        limit = page_size(request.page_size)
        before = PRODUCTS.decode_int(request.page_token, bound_to=scope)
        rows = await asyncio.to_thread(self._store.products, None if merchant == "-" else merchant, state, words,
                                       self._caller().user, before, limit + 1)
        response = catalog_pb2.ListProductsResponse(products=[messages.product_out(p) for _, p in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = PRODUCTS.encode(rows[limit - 1][0], bound_to=scope)
        return response

    async def UpdateProduct(self, request: catalog_pb2.UpdateProductRequest,
                            context: Call) -> catalog_pb2.UpdateProductResponse:
        ids = PRODUCT.parse(request.product.name, field="product.name")
        product = await catalogue.update_product(self._ctx, self._caller(), request.product.name, ids["merchant"],
                                                messages.product_changes(request))
        return catalog_pb2.UpdateProductResponse(product=messages.product_out(product))


class InventoryServicer(_Handlers, inventory_pb2_grpc.InventoryServiceServicer):
    async def GetInventory(self, request: inventory_pb2.GetInventoryRequest,
                           context: Call) -> inventory_pb2.GetInventoryResponse:
        variant, merchant, _ = messages.inventory_in(request.name)
        caller = self._caller()
        if not caller.staff:
            catalogue.require_own_catalog(caller, merchant)
        stock = await self._ctx.store.read(lambda unit: unit.stock(variant))
        if stock is None:
            raise NotFound(f"no variant {variant}", resource_name=variant, reason="VARIANT_NOT_FOUND")
        return inventory_pb2.GetInventoryResponse(inventory=messages.inventory_out(stock))

    async def AdjustInventory(self, request: inventory_pb2.AdjustInventoryRequest,
                              context: Call) -> inventory_pb2.AdjustInventoryResponse:
        variant, merchant, product = messages.inventory_in(request.name)
        stock = await inventory.adjust_inventory(self._ctx, self._caller(), request.request_id, variant, merchant,
                                                product, request.delta, messages.ADJUSTMENT_REASONS[request.reason])
        return inventory_pb2.AdjustInventoryResponse(inventory=messages.inventory_out(stock))

    async def ReserveStock(self, request: inventory_pb2.ReserveStockRequest,
                           context: Call) -> inventory_pb2.ReserveStockResponse:
        PRODUCT.parse(request.product, field="product")
        USER.parse(request.holder, field="holder")
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else None
        reservation = await inventory.reserve_stock(self._ctx, self._caller(), request.request_id, request.product,
                                                   request.variant, request.quantity, request.holder, ttl)
        return inventory_pb2.ReserveStockResponse(reservation=messages.reservation_out(reservation))

    async def ReleaseReservation(self, request: inventory_pb2.ReleaseReservationRequest,
                                 context: Call) -> inventory_pb2.ReleaseReservationResponse:
        RESERVATION.parse(request.name, field="name")
        reservation = await inventory.release_reservation(self._ctx, self._caller(), request.request_id, request.name)
        return inventory_pb2.ReleaseReservationResponse(reservation=messages.reservation_out(reservation))

    async def GetReservation(self, request: inventory_pb2.GetReservationRequest,
                             context: Call) -> inventory_pb2.GetReservationResponse:
        RESERVATION.parse(request.name, field="name")
        found = await self._ctx.store.read(lambda unit: unit.reservation(request.name))
        reservation = inventory.visible_reservation(self._caller(), found, request.name)
        return inventory_pb2.GetReservationResponse(reservation=messages.reservation_out(reservation))


class LivePinServicer(_Handlers, live_pins_pb2_grpc.LivePinServiceServicer):
    async def PinProduct(self, request: live_pins_pb2.PinProductRequest,
                         context: Call) -> live_pins_pb2.PinProductResponse:
        PRODUCT.parse(request.product, field="product")
        pin = await pins.pin_product(self._ctx, self._caller(), request.parent, request.product,
                                         request.flash_price_minor, messages.end_time_in(request))
        return live_pins_pb2.PinProductResponse(live_pin=messages.pin_out(pin, self._ctx.clock()))

    async def UnpinProduct(self, request: live_pins_pb2.UnpinProductRequest,
                           context: Call) -> live_pins_pb2.UnpinProductResponse:
        pin = await pins.unpin_product(self._ctx, self._caller(), request.name)
        return live_pins_pb2.UnpinProductResponse(live_pin=messages.pin_out(pin, self._ctx.clock()))

    async def ListLivePins(self, request: live_pins_pb2.ListLivePinsRequest,
                           context: Call) -> live_pins_pb2.ListLivePinsResponse:
        LIVE.parse(request.parent, field="parent")
        scope = f"{request.parent}|{request.active_only}"
        limit = page_size(request.page_size)
        before = PINS.decode_int(request.page_token, bound_to=scope)
        now = self._ctx.clock()
        rows = await asyncio.to_thread(self._store.pins, request.parent, request.active_only, now, before, limit + 1)
        response = live_pins_pb2.ListLivePinsResponse(live_pins=[messages.pin_out(p, now) for _, p in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = PINS.encode(rows[limit - 1][0], bound_to=scope)
        return response


class OrderServicer(_Handlers, orders_pb2_grpc.OrderServiceServicer):
    async def _opened(self, order: Order) -> Order:
        """The order with its sealed personal fields opened for the response (empty once erased)."""
        sealer = self._ctx.sealer
        if sealer is None or not order.has_sealed_fields:
            return order
        address, recipient = await asyncio.to_thread(self._store.sealed_fields, order.name)
        if address is None and recipient is None:
            return order
        subject = f"users/{order.buyer}"
        return replace(order, shipping_address=await sealer.open(subject, "order.shipping_address", address) or "",
                       recipient_name=await sealer.open(subject, "order.recipient_name", recipient) or "")

    async def _order_out(self, order: Order) -> orders_pb2.Order:
        return messages.order_out(await self._opened(order))

    async def Checkout(self, request: orders_pb2.CheckoutRequest, context: Call) -> orders_pb2.CheckoutResponse:
        buyer = USER.parse(request.buyer, field="buyer")["user"]
        for index, item in enumerate(request.items):
            PRODUCT.parse(item.product, field=f"items[{index}].product")
        command = orders.Checkout(
            request.request_id, buyer, tuple(orders.CheckoutItem(i.product, i.variant, i.quantity)
                                             for i in request.items),
            request.payment_method.provider, request.payment_method.token, request.expected_total_minor,
            request.currency_code, request.live, request.affiliate_visitor_id, request.shipping_address,
            request.recipient_name)
        order = await orders.checkout(self._ctx, self._caller(), command)
        return orders_pb2.CheckoutResponse(order=await self._order_out(order))

    async def CaptureOrder(self, request: orders_pb2.CaptureOrderRequest,
                           context: Call) -> orders_pb2.CaptureOrderResponse:
        ORDER.parse(request.name, field="name")
        order = await orders.capture_order(self._ctx, self._caller(), request.request_id, request.name)
        return orders_pb2.CaptureOrderResponse(order=await self._order_out(order))

    async def FulfillOrder(self, request: orders_pb2.FulfillOrderRequest,
                           context: Call) -> orders_pb2.FulfillOrderResponse:
        ORDER.parse(request.name, field="name")
        order = await orders.fulfill_order(self._ctx, self._caller(), request.request_id, request.name,
                                             messages.fulfillment_in(request.fulfillment))
        return orders_pb2.FulfillOrderResponse(order=await self._order_out(order))

    async def CancelOrder(self, request: orders_pb2.CancelOrderRequest,
                          context: Call) -> orders_pb2.CancelOrderResponse:
        ORDER.parse(request.name, field="name")
        order = await orders.cancel_order(self._ctx, self._caller(), request.request_id, request.name,
                                            messages.cancel_reason_in(request.reason))
        return orders_pb2.CancelOrderResponse(order=await self._order_out(order))

    async def RefundOrder(self, request: orders_pb2.RefundOrderRequest,
                          context: Call) -> orders_pb2.RefundOrderResponse:
        ORDER.parse(request.name, field="name")
        for index, item in enumerate(request.items):
            PRODUCT.parse(item.product, field=f"items[{index}].product")
        command = orders.RefundRequest(request.request_id, request.name,
                                         tuple((i.product, i.variant, i.quantity) for i in request.items),
                                         request.reason, request.restock)
        order, refund = await orders.refund_order(self._ctx, self._caller(), command)
        message = await self._order_out(order)
        made = next(r for r in message.refunds if r.request_id == refund.request_id)
        return orders_pb2.RefundOrderResponse(order=message, refund=made)

    async def GetOrder(self, request: orders_pb2.GetOrderRequest, context: Call) -> orders_pb2.GetOrderResponse:
        ORDER.parse(request.name, field="name")
        found = await self._ctx.store.read(lambda unit: unit.order(request.name))
        order = orders.visible_order(self._caller(), found, request.name)
        return orders_pb2.GetOrderResponse(order=await self._order_out(order))

    async def ListOrders(self, request: orders_pb2.ListOrdersRequest, context: Call) -> orders_pb2.ListOrdersResponse:
        buyer = USER.parse(request.parent, field="parent", wildcard=True)["user"]
        merchant = MERCHANT.parse(request.merchant, field="merchant")["merchant"] if request.merchant else None
        caller = self._caller()
        allowed = caller.staff or (buyer != "-" and buyer == caller.user) or \
            (merchant is not None and caller.merchant and merchant == caller.user)
        if not allowed:
            raise PermissionDenied(f"{caller.subject} cannot list these orders", reason="NOT_OWN_ORDERS")
        if buyer == "-" and merchant is None:
            raise InvalidArgument.for_field("merchant", "required when listing across buyers")
        state = messages.order_state_in(request.state)
        scope = f"{request.parent}|{request.merchant}|{request.state}"
        limit = page_size(request.page_size)
        before = ORDERS.decode_int(request.page_token, bound_to=scope)
        rows = await asyncio.to_thread(self._store.orders, None if buyer == "-" else buyer, merchant, state, before,
                                       limit + 1)
        response = orders_pb2.ListOrdersResponse(orders=[messages.order_out(o) for _, o in rows[:limit]])
        if len(rows) > limit:
            response.next_page_token = ORDERS.encode(rows[limit - 1][0], bound_to=scope)
        return response

    async def GetSpendingLimits(self, request: orders_pb2.GetSpendingLimitsRequest,
                                context: Call) -> orders_pb2.GetSpendingLimitsResponse:
        user = SPENDING_LIMITS.parse(request.name, field="name")["user"]
        limits = await minors.spending_limits(self._ctx, self._caller(), user)
        return orders_pb2.GetSpendingLimitsResponse(spending_limits=messages.limits_out(limits))

    async def RecordParentalConsent(self, request: orders_pb2.RecordParentalConsentRequest,
                                    context: Call) -> orders_pb2.RecordParentalConsentResponse:
        user = USER.parse(request.minor, field="minor")["user"]
        limits = await minors.record_parental_consent(self._ctx, self._caller(), request.request_id, user,
                                                        request.granted, request.evidence_reference)
        return orders_pb2.RecordParentalConsentResponse(spending_limits=messages.limits_out(limits))


class ShopSubjectData:
    """What the shop holds about a user, for the shared SubjectDataService (libs.privacy.servicer)."""

    def __init__(self, ctx: ShopContext, store: ShopStore) -> None:
        self._ctx = ctx
        self._store = store

    async def export(self, user_id: str) -> dict[str, object]:
        return await subject_data.export_subject_data(self._ctx, self._store, user_id)

    async def erase(self, user_id: str) -> Erasure:
        return await subject_data.erase_subject_data(self._store, user_id)

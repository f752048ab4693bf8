"""Stock and reservations: every move a conditional update inside one unit of work."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from libs.errors import FailedPrecondition, NotFound, PermissionDenied
from services.shop.model import (
    ProductState,
    ProductType,
    Reservation,
    ReservationState,
    Stock,
    fingerprint,
    merged_needs,
)
from services.shop.usecases.catalogue import (
    product_not_found,
    require_own_catalog,
)
from services.shop.usecases.ports import (
    Caller,
    ShopContext,
    Unit,
    new_id,
)


async def adjust_inventory(ctx: ShopContext, caller: Caller, request_id: str, variant: str, merchant: str,
                           product: str, delta: int, reason: str) -> Stock:
    require_own_catalog(caller, merchant)
    print_ = fingerprint({"variant": variant, "delta": delta, "reason": reason})
    event = ctx.audit.event("shop.AdjustInventory", variant, attributes={"delta": str(delta), "reason": reason})

    def work(unit: Unit) -> Stock:
        if unit.claim(request_id, "AdjustInventory", print_) is not None:
            stock = unit.stock(variant)
            assert stock is not None
            return stock
        found = unit.product(product)
        if found is None:
            raise product_not_found(product)
        if found.type is ProductType.BUNDLE:
            raise FailedPrecondition(f"{product} is a bundle: adjust its components", reason="BUNDLE_HAS_NO_STOCK")
        if unit.stock(variant) is None:
            raise NotFound(f"no variant {variant}", resource_name=variant, reason="VARIANT_NOT_FOUND")
        stock = unit.adjust_on_hand(variant, delta, request_id)
        unit.remember(request_id, "AdjustInventory", print_, variant)
        unit.audit(event)
        return stock

    return await ctx.store.run(work)


async def reserve_stock(ctx: ShopContext, caller: Caller, request_id: str, product_name: str, variant_id: str,
                        quantity: int, holder: str, ttl: dt.timedelta | None) -> Reservation:
    if not caller.staff and f"users/{caller.user}" != holder:
        raise PermissionDenied(f"{caller.subject} cannot hold stock for {holder}", reason="NOT_HOLDER")
    merchant = product_name.split("/")[1]
    print_ = fingerprint({"product": product_name, "variant": variant_id, "quantity": quantity, "holder": holder,
                          "ttl": ttl.total_seconds() if ttl else None})
    event = ctx.audit.event("shop.ReserveStock", product_name, subject=holder, attributes={"quantity": str(quantity)})

    def work(unit: Unit) -> Reservation:
        earlier = unit.claim(request_id, "ReserveStock", print_)
        if earlier is not None:
            found = unit.reservation(earlier)
            assert found is not None
            return found
        product = unit.product(product_name)
        if product is None or product.state is ProductState.DRAFT:
            raise product_not_found(product_name)
        product.require_on_sale()
        variant = product.variant(variant_id, field_path="variant")
        needs = merged_needs(list(product.stock_needs(variant, quantity)))
        unit.reserve(needs)
        reservation = Reservation(merchant, new_id(), holder, request_id, needs, ReservationState.ACTIVE, unit.now,
                                  unit.now + (ttl or ctx.rules.reservation_ttl))
        unit.insert_reservation(reservation)
        unit.remember(request_id, "ReserveStock", print_, reservation.name)
        unit.audit(event)
        return reservation

    return await ctx.store.run(work)


def reservation_not_found(name: str) -> NotFound:
    return NotFound(f"no reservation {name}", resource_name=name, reason="RESERVATION_NOT_FOUND")


def visible_reservation(caller: Caller, reservation: Reservation | None, name: str) -> Reservation:
    if reservation is None or not (caller.staff or reservation.holder.split("/")[1] == caller.user
                                   or (caller.merchant and caller.user == reservation.merchant)):
        raise reservation_not_found(name)
    return reservation


async def release_reservation(ctx: ShopContext, caller: Caller, request_id: str, name: str) -> Reservation:
    print_ = fingerprint({"name": name})
    event = ctx.audit.event("shop.ReleaseReservation", name)

    def work(unit: Unit) -> Reservation:
        reservation = unit.reservation(name)
        if reservation is None or not (caller.staff or reservation.holder == f"users/{caller.user}"):
            raise reservation_not_found(name)
        if unit.claim(request_id, "ReleaseReservation", print_) is not None \
                or reservation.state in (ReservationState.RELEASED, ReservationState.EXPIRED):
            return reservation
        if reservation.state is ReservationState.COMMITTED:
            raise FailedPrecondition(f"{name} was bought", reason="RESERVATION_COMMITTED")
        if reservation.holder.count("/") > 1:
            raise FailedPrecondition(f"{name} belongs to an order: cancel the order", reason="RESERVATION_OF_ORDER")
        unit.release(reservation.items)
        unit.set_reservation_state(name, ReservationState.RELEASED)
        unit.remember(request_id, "ReleaseReservation", print_, name)
        unit.audit(event)
        return replace(reservation, state=ReservationState.RELEASED)

    return await ctx.store.run(work)

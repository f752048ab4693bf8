"""LIVE pins: the host pins a product in a running LIVE; every pin is advertising."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from services.shop.model import (
    DEFAULT_DISCLOSURE_LABEL,
    LIVE,
    PIN,
    LivePin,
    ProductState,
    require_live_host,
)
from services.shop.usecases.catalogue import (
    product_not_found,
)
from services.shop.usecases.ports import (
    Caller,
    ShopContext,
    Unit,
    new_id,
)


async def pin_product(ctx: ShopContext, caller: Caller, live: str, product_name: str, flash_price_minor: int,
                      end_time: dt.datetime | None) -> LivePin:
    ids = LIVE.parse(live, field="parent")
    require_live_host(caller.user, ids["creator"], live)
    now = ctx.clock()
    if end_time is not None and end_time <= now:
        raise InvalidArgument.for_field("end_time", "must be in the future")
    product = await ctx.store.read(lambda unit: unit.product(product_name))
    if product is None or product.state is ProductState.DRAFT:
        raise product_not_found(product_name)
    product.require_on_sale()
    if flash_price_minor and flash_price_minor >= product.price_minor:
        raise InvalidArgument.for_field("flash_price_minor", f"must be below the price, {product.price_minor}")
    assert ctx.lives is not None and ctx.disclosure is not None
    live_until = await ctx.lives.live_until(live)
    if live_until is None:
        raise FailedPrecondition(f"{live} is not LIVE", reason="LIVE_NOT_LIVE", metadata={"live": live})
    # A pin (and its flash price) ends with the LIVE at the latest.
    end_time = live_until if end_time is None else min(end_time, live_until)
    label = await ctx.disclosure.label(live, product_name) or DEFAULT_DISCLOSURE_LABEL
    pin = LivePin(ids["creator"], ids["live"], new_id(), product_name, product.currency_code, label, now,
                  flash_price_minor, end_time)
    event = ctx.audit.event("shop.PinProduct", pin.name, subject=f"users/{ids['creator']}",
                            attributes={"product": product_name, "flash_price_minor": str(flash_price_minor)})

    def work(unit: Unit) -> LivePin:
        unit.insert_pin(pin)
        unit.audit(event)
        unit.deliver("compliance.register_ad", {"pin": pin.name, "product": product_name, "title": product.title,
                                                "merchant": product.merchant, "creator": ids["creator"],
                                                "live": live}, traced_by=event)
        return pin

    return await ctx.store.run(work)


async def unpin_product(ctx: ShopContext, caller: Caller, name: str) -> LivePin:
    event = ctx.audit.event("shop.UnpinProduct", name)

    ids = PIN.parse(name, field="name")
    require_live_host(caller.user, ids["creator"], LIVE.format(creator=ids["creator"], live=ids["live"]))

    def work(unit: Unit) -> LivePin:
        pin = unit.pin(name)
        if pin is None:
            raise NotFound(f"no pin {name}", resource_name=name, reason="PIN_NOT_FOUND")
        if pin.unpin_time is not None:
            return pin
        unpinned = replace(pin, unpin_time=unit.now)
        unit.save_pin(unpinned)
        unit.audit(event)
        return unpinned

    return await ctx.store.run(work)


async def deliver_register_ad_result(ctx: ShopContext, pin_name: str, ad: str) -> None:
    def work(unit: Unit) -> None:
        pin = unit.pin(pin_name)
        if pin is not None and not pin.ad:
            unit.save_pin(replace(pin, ad=ad))

    await ctx.store.run(work)

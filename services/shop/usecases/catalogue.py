"""Merchants' catalogues: only a merchant changes its own products."""

from __future__ import annotations

from dataclasses import replace

from libs.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.shop.model import (
    DEFAULT_VARIANT,
    Product,
    ProductState,
    ProductType,
    Variant,
    check_new_product,
)
from services.shop.usecases.ports import (
    Caller,
    ShopContext,
    Unit,
)


def require_own_catalog(caller: Caller, merchant: str) -> None:
    if not caller.merchant or caller.user != merchant:
        raise PermissionDenied(f"only merchant {merchant} changes its catalogue", reason="NOT_OWN_CATALOG",
                               metadata={"merchant": f"merchants/{merchant}"})


async def create_product(ctx: ShopContext, caller: Caller, product: Product) -> Product:
    require_own_catalog(caller, product.merchant)
    now = ctx.clock()
    variants = product.variants or ((Variant(DEFAULT_VARIANT),) if product.type is not ProductType.BUNDLE else ())
    product = replace(product, variants=variants, create_time=now, update_time=now)
    check_new_product(product)
    event = ctx.audit.event("shop.CreateProduct", product.name, attributes={"state": product.state.value})

    def work(unit: Unit) -> Product:
        if unit.product(product.name) is not None:
            raise_exists(product.name)
        for index, component in enumerate(product.components):
            if unit.stock(component.variant) is None:
                raise InvalidArgument.for_field(f"product.bundle_components[{index}].variant",
                                                f"{component.variant} is not a variant with stock of its own")
        unit.insert_product(product)
        unit.audit(event)
        return product

    return await ctx.store.run(work)


def raise_exists(name: str) -> None:
    raise AlreadyExists(f"{name} exists", reason="PRODUCT_EXISTS", metadata={"product": name})


def product_not_found(name: str) -> NotFound:
    return NotFound(f"no product {name}", resource_name=name, reason="PRODUCT_NOT_FOUND")


def visible_product(caller: Caller, product: Product | None, name: str) -> Product:
    if product is None or (product.state is ProductState.DRAFT and caller.user != product.merchant):
        raise product_not_found(name)
    return product


async def update_product(ctx: ShopContext, caller: Caller, name: str, merchant: str,
                         changes: dict[str, object]) -> Product:
    require_own_catalog(caller, merchant)
    event = ctx.audit.event("shop.UpdateProduct", name, attributes={"fields": ",".join(sorted(changes))})

    def work(unit: Unit) -> Product:
        product = unit.product(name)
        if product is None:
            raise product_not_found(name)
        if product.state is ProductState.ARCHIVED and set(changes) - {"state"}:
            raise FailedPrecondition(f"{name} is archived", reason="PRODUCT_ARCHIVED")
        changed = replace(product, update_time=unit.now, **changes)  # type: ignore[arg-type]
        unit.save_product(changed)
        unit.audit(event)
        return changed

    return await ctx.store.run(work)

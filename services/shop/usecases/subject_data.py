"""The data subject's rights (GDPR Art. 15, 17): what the shop holds about a buyer, and erasure."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable
from dataclasses import replace
from typing import Protocol

from libs.privacy.subject_data import Erasure, RetentionException
from services.shop.model import (
    Order,
    OrderState,
)
from services.shop.usecases.ports import (
    ShopContext,
)

ORDERS_KEPT = ("shop.orders", "§ 257 HGB / § 147 AO: orders, amounts, products and payment references are kept"
               " for 10 years as commercial and tax records")
CONSENTS_KEPT = ("shop.parental_consents", "Art. 17(3)(b) GDPR, §§ 107, 195 BGB: the record that a guardian consented"
                 " to a minor's purchases is kept while it can be needed as proof, 3 years")


class SubjectRecords(Protocol):
    """What an export and an erasure need from the store."""

    def orders(self, buyer: str | None, merchant: str | None, state: OrderState | None, before: int | None,
               limit: int) -> list[tuple[int, Order]]: ...
    def sealed_fields(self, order: str) -> tuple[bytes | None, bytes | None]: ...
    def erase_personal_fields(self, buyer: str) -> Awaitable[int]: ...
    def parental_consents(self, minor: str) -> list[dict[str, object]]: ...


async def export_subject_data(ctx: ShopContext, records: SubjectRecords, user: str) -> dict[str, object]:
    """Everything the shop holds about `users/{user}` as a buyer, as JSON-ready sections, with
    the sealed shipping details opened (empty once erased)."""
    orders: list[Order] = []
    before: int | None = None
    while True:
        page = await asyncio.to_thread(records.orders, user, None, None, before, 500)
        orders += [order for _, order in page]
        if len(page) < 500:
            break
        before = page[-1][0]
    exported = []
    for order in orders:
        address, recipient = await asyncio.to_thread(records.sealed_fields, order.name)
        if ctx.sealer is not None:
            order = replace(order, shipping_address=await ctx.sealer.open(f"users/{user}", "order.shipping_address",
                                                                          address) or "",
                            recipient_name=await ctx.sealer.open(f"users/{user}", "order.recipient_name",
                                                                 recipient) or "")
        exported.append(json.loads(json.dumps(dataclasses.asdict(order), default=str)))
    sections: dict[str, object] = {"orders": exported} if exported else {}
    consents = await asyncio.to_thread(records.parental_consents, f"users/{user}")
    if consents:
        sections["parental_consents"] = consents
    return sections


async def erase_subject_data(records: SubjectRecords, user: str) -> Erasure:
    """The shop's erasure step (idempotent): the shipping details go (they are also shredded with
    the key); the orders and parental consent records stay, by law."""
    erased = await records.erase_personal_fields(user)
    return Erasure(f"shipping details of {erased} orders erased; the orders and any parental consent record are"
                   " kept by law", tuple(RetentionException(*kept) for kept in (ORDERS_KEPT, CONSENTS_KEPT)))

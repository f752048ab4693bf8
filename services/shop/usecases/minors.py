"""Spending limits and parental consent for buyers aged 7 to 17 (§§ 104-113 BGB)."""

from __future__ import annotations

from libs.errors import PermissionDenied
from services.shop.model import (
    SpendingLimits,
    fingerprint,
    month_start,
)
from services.shop.usecases.ports import (
    Caller,
    ShopContext,
    Unit,
)


async def spending_limits(ctx: ShopContext, caller: Caller, user: str) -> SpendingLimits:
    if not (caller.user == user or caller.staff or caller.officer):
        raise PermissionDenied(f"{caller.subject} cannot see users/{user}'s limits", reason="NOT_OWN_LIMITS")
    policy = ctx.rules.spending
    now = ctx.clock()

    def look(unit: Unit) -> tuple[int, bool]:
        return unit.spent_since(user, month_start(now)), unit.parental_consent(f"users/{user}")

    spent, consent = await ctx.store.read(look)
    age = caller.age if caller.user == user else None
    minor = age is None or age < 18
    return SpendingLimits(user, minor, age is not None and age >= 7, consent,
                          policy.per_transaction_cap_minor if minor else 0, policy.monthly_cap_minor if minor else 0,
                          spent, policy.currency_code)


async def record_parental_consent(ctx: ShopContext, caller: Caller, request_id: str, user: str, granted: bool,
                                  evidence: str) -> SpendingLimits:
    if not (caller.operator or caller.officer):
        raise PermissionDenied("only operators and compliance officers record parental consent",
                               reason="ROLE_REQUIRED")
    print_ = fingerprint({"user": user, "granted": granted, "evidence": evidence})
    event = ctx.audit.event("shop.RecordParentalConsent", f"users/{user}/spendingLimits", subject=f"users/{user}",
                            attributes={"granted": str(granted)})

    def work(unit: Unit) -> None:
        if unit.claim(request_id, "RecordParentalConsent", print_) is not None:
            return
        unit.record_parental_consent(f"users/{user}", granted, evidence, caller.subject, request_id)
        unit.remember(request_id, "RecordParentalConsent", print_, user)
        unit.audit(event)

    await ctx.store.run(work)
    return await spending_limits(ctx, caller, user)

"""The sweep: what a crash or the clock left half done, finished or compensated."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from libs.errors import FailedPrecondition
from services.shop.model import (
    CancelReason,
    PaymentState,
    ReservationState,
)
from services.shop.usecases.orders import (
    compensate,
    finish_capture,
    finish_refund,
)
from services.shop.usecases.ports import (
    ShopContext,
    Unit,
)


@dataclass(frozen=True)
class SweepResult:
    expired_reservations: int
    compensated_orders: int


async def sweep(ctx: ShopContext, *, at_start: bool = False) -> SweepResult:
    """Finish what a crash or the clock left: expire lapsed reservations (their stock comes back),
    compensate checkouts that lost their process (CREATED), finish captures, voids and refunds
    that lost theirs (CAPTURING, VOIDING, refund intents), and cancel or complete orders whose reservation lapsed before capture. At start
    every CREATED or CAPTURING order is a lost call."""
    now = ctx.clock()
    # Users' holds lapse here; an order's hold lapses with its order, below.
    lapsed = [r for r in await ctx.store.read(lambda unit: unit.expired_reservations(500)) if r.holder.count("/") == 1]
    events = {r.name: ctx.audit.event("shop.ExpireReservation", r.name, subject=r.holder) for r in lapsed}

    def expire(unit: Unit) -> int:
        expired = 0
        for reservation in lapsed:
            current = unit.reservation(reservation.name)
            if current is not None and current.state is ReservationState.ACTIVE:
                unit.release(current.items)
                unit.set_reservation_state(current.name, ReservationState.EXPIRED)
                unit.audit(events[current.name])
                expired += 1
        return expired

    expired = await ctx.store.run(expire) if lapsed else 0
    created_before = now if at_start else now - ctx.rules.checkout_grace
    orders = await ctx.store.sweep_candidates(created_before=created_before, now=now, limit=500)
    for order in orders:
        if order.payment.state is PaymentState.CAPTURING:
            with contextlib.suppress(FailedPrecondition):  # lapsed: compensated instead
                await finish_capture(ctx, order)
        else:
            await compensate(ctx, order.name, CancelReason.EXPIRED)
    refunds = await ctx.store.lost_refunds(before=created_before, limit=500)
    for name, refund, restock in refunds:
        await finish_refund(ctx, name, refund, restock)
    return SweepResult(expired, len(orders) + len(refunds))

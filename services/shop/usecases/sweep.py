"""The sweep: what a crash or the clock left half done, finished or compensated."""

from __future__ import annotations

from collections.abc import Awaitable
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
    finished_orders: int
    # Orders whose step failed this time (the provider away, say): the next sweep tries again.
    failed_orders: tuple[str, ...] = ()


async def sweep(ctx: ShopContext, *, at_start: bool = False) -> SweepResult:
    """Finish what a crash or the clock left: expire lapsed reservations (their stock comes back),
    compensate checkouts that lost their process (CREATED), finish captures, voids and refunds
    that lost theirs (CAPTURING, VOIDING, refund intents), and cancel or complete orders whose
    reservation lapsed before capture. At start every such order is a lost call; afterwards
    those older than `checkout_grace`, so a call still in flight is left to finish."""
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
    steps: list[tuple[str, Awaitable[object]]] = []
    for order in await ctx.store.sweep_candidates(created_before=created_before, now=now, limit=500):
        steps.append((order.name, finish_capture(ctx, order) if order.payment.state is PaymentState.CAPTURING
                       else compensate(ctx, order.name, CancelReason.EXPIRED)))
    for name, refund, restock in await ctx.store.lost_refunds(before=created_before, limit=500):
        steps.append((name, finish_refund(ctx, name, refund, restock)))
    failed = []
    for name, step in steps:
        try:
            await step
        except FailedPrecondition:
            pass  # a capture whose authorisation lapsed: compensated instead
        except Exception:  # one order's failure must not keep the sweep from the others
            failed.append(name)
    return SweepResult(expired, len(steps) - len(failed), tuple(failed))

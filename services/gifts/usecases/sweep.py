"""Time-driven work: expire overdue pending transfers, release matured diamonds, end overdue LIVEs."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from services.gifts.model.audit import AuditEvent, AuditOutbox, Outcome
from services.gifts.model.idempotency import RequestLog
from services.gifts.model.ledger import Entry, Phase
from services.gifts.model.live import LiveSessions
from services.gifts.usecases.commands import Sweep, SweepResult
from services.gifts.usecases.context import SYSTEM_ACTOR, Context
from services.gifts.usecases.holds import HoldReleaseUnit, release_matured_holds
from services.gifts.usecases.live import end_if_overdue

SWEEP_BATCH = 200
# The sweep acts on the whole ledger, not on one API resource.
LEDGER_RESOURCE = "ledger"


class SweepUnit(RequestLog, LiveSessions, HoldReleaseUnit, AuditOutbox, Protocol):
    def expired_pending(self, now: dt.datetime, limit: int) -> list[Entry]: ...


def sweep(context: Context, uow: SweepUnit, command: Sweep) -> SweepResult:
    """Runs as the service itself under a fresh request id; each pass does a bounded amount
    of work so one sweep never holds up a batch for long."""
    now, request_id = context.now, command.request_id
    uow.claim_request(request_id, "Sweep", SYSTEM_ACTOR, {}, now)
    expired = uow.expired_pending(now, SWEEP_BATCH)
    if expired:
        uow.resolve(request_id, [entry.transfer_id for entry in expired], Phase.EXPIRE_PENDING, now)
    released = release_matured_holds(uow, request_id, now)
    overdue = uow.overdue_lives(now, SWEEP_BATCH)
    for session in overdue:
        end_if_overdue(uow, session, now)
    result = SweepResult(len(expired), released, len(overdue))
    if expired or released:
        uow.record_audit(AuditEvent("Sweep", SYSTEM_ACTOR, Outcome.APPLIED, request_id, LEDGER_RESOURCE, now,
                                    details={"pending_expired": str(len(expired)), "holds_released": str(released)}))
    uow.record_result(request_id, {"pending_expired": result.pending_expired,
                                   "holds_released": result.holds_released, "lives_ended": result.lives_ended})
    return result

"""Audit events for every money movement and every refusal, and the one seam they leave by.

Events are written to an outbox table in the same transaction as the effect they
describe, so the record and the effect commit together or not at all; a refusal's event
is written in the same batch after its rollback. `AuditRelay` then hands the outbox, in
order, to an `AuditSink`: the compliance service's audit client once it exists. The
sink may see an event twice after a crash (delivery is at least once); `event_id` is
stable, so the audit log can drop the repeat.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Outcome(enum.StrEnum):
    APPLIED = "APPLIED"
    HELD = "HELD"
    REFUSED = "REFUSED"  # a business rule said no
    DENIED = "DENIED"  # authentication or authorisation said no, before any rule ran


@dataclass(frozen=True)
class AuditEvent:
    action: str  # the use case, e.g. "SendGift"
    actor: str  # principal subject, e.g. "users/alice" or "services/payments"
    outcome: Outcome
    request_id: str
    resource: str  # what it is about, e.g. "lives/{live}/gifts/{gift}"
    occurred_at_us: int
    reason: str = ""
    details: dict[str, str] = field(default_factory=dict)
    transfer_ids: tuple[int, ...] = ()
    trace_id: str = ""  # the W3C trace of the request that caused it; stamped by the store


@dataclass(frozen=True)
class RecordedAuditEvent:
    sequence: int  # its place in the outbox
    event_id: str  # a UUID that never changes, so a redelivery is recognisable
    event: AuditEvent


class AuditOutbox(Protocol):
    def record_audit(self, event: AuditEvent) -> None:
        """Append to the outbox; transfers written so far in this unit are attached."""
        ...


class AuditSink(Protocol):
    async def deliver(self, events: Sequence[RecordedAuditEvent]) -> None:
        """Durably accept the events, in order, or raise (they will be offered again)."""
        ...


class AuditOutboxReader(Protocol):
    def audit_events_after(self, sequence: int, limit: int) -> list[RecordedAuditEvent]: ...

    def audit_delivered_through(self) -> int: ...

    def mark_audit_delivered(self, sequence: int) -> None: ...


class AuditRelay:
    """Moves the outbox to the sink in order; the outbox reads and writes run off the event loop."""

    def __init__(self, outbox: AuditOutboxReader, sink: AuditSink, *, batch: int = 500) -> None:
        self._outbox = outbox
        self._sink = sink
        self._batch = batch

    async def deliver_pending(self) -> int:
        """Deliver everything recorded so far; returns how many events went out."""
        delivered = 0
        while True:
            through = await asyncio.to_thread(self._outbox.audit_delivered_through)
            events = await asyncio.to_thread(self._outbox.audit_events_after, through, self._batch)
            if not events:
                return delivered
            await self._sink.deliver(events)
            await asyncio.to_thread(self._outbox.mark_audit_delivered, events[-1].sequence)
            delivered += len(events)

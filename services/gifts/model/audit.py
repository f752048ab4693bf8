"""Audit events for every money movement and every refusal, recorded with what they describe.

Events are written to an outbox table in the same transaction as the effect they
describe, so the record and the effect commit together or not at all; a refusal's event
is written in the same batch after its rollback. The shared audit client ships the outbox
to compliance (`audit_outbox.py` is the one seam); delivery is at least once, and event ids
never change, so the audit log drops a repeat.
"""

from __future__ import annotations

import datetime as dt
import enum
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
    occurred_at: dt.datetime
    reason: str = ""
    details: dict[str, str] = field(default_factory=dict)
    transfer_ids: tuple[int, ...] = ()
    trace_id: str = ""  # the W3C trace of the request that caused it; stamped by the store


@dataclass(frozen=True)
class RecordedAuditEvent:
    sequence: int  # its place in the outbox
    event: AuditEvent


class AuditOutbox(Protocol):
    def record_audit(self, event: AuditEvent) -> None:
        """Append to the outbox; transfers written so far in this unit are attached."""
        ...

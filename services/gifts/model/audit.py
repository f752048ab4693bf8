"""Audit events for every money movement and every refusal, recorded with what they describe.

Events are written to the shared outbox (`libs.audit.outbox`) in the same transaction as
the effect they describe, so the record and the effect commit together or not at all; a
refusal's event is written in the same batch after its rollback. The store stamps each
with the transfers its unit wrote and the call's trace (`audit_events.py` maps them to the
platform's events); the shared shipper sends them to compliance, at least once, and event
ids never change, so the audit log drops a repeat.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
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
    resource: str  # the API resource it is about, e.g. "creators/{c}/lives/{l}/giftTransfers/{g}"
    occurred_at: dt.datetime
    reason: str = ""
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Trace:
    """The trace of the call an event belongs to: its W3C trace id and propagation context."""

    trace_id: str = ""
    context: Mapping[str, str] = field(default_factory=dict)


NO_TRACE = Trace()  # work nobody's call caused (the sweep, a tool)


class AuditOutbox(Protocol):
    def record_audit(self, event: AuditEvent) -> None:
        """Append to the outbox; transfers written so far in this unit are attached."""
        ...

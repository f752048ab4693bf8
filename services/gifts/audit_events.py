"""Gifts' audit events as the platform records them (`libs.audit.events.AuditEvent`).

The use cases describe what they did in gifts' terms (`model.audit.AuditEvent`); the store
writes each into the shared outbox (`libs.audit.outbox`) in the same transaction as the
money it describes, through `PlatformEvents`: action `gifts.<UseCase>`, the outcome
compliance knows, the actor's pseudonymous reference as the subject, the transfers the
unit wrote, the call's trace, and attributes that name nobody. The shared shipper sends
them to compliance in the order they were written.

An event's id is fixed when it is written, so it never changes between deliveries.
Events written by gifts' own outbox before the shared one (`legacy_event_id`) keep the ids
they had: a UUIDv8 of that outbox's log id and the row's sequence.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from libs.audit.events import AuditEvent as PlatformAuditEvent
from libs.audit.events import Outcome as PlatformOutcome
from libs.audit.outbox import TracedEvent
from libs.audit.pseudonyms import Pseudonymizer
from services.gifts.model.audit import AuditEvent, Outcome, Trace

_OUTCOMES = {
    Outcome.APPLIED: PlatformOutcome.SUCCEEDED,
    Outcome.HELD: PlatformOutcome.SUCCEEDED,
    Outcome.REFUSED: PlatformOutcome.REJECTED,
    Outcome.DENIED: PlatformOutcome.DENIED,
}
_SEQUENCE_BITS = 62
_ATTRIBUTE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
# A value that names a user or a creator (an account, a LIVE, an owner) is personal data; the
# event says whom it concerns through its resource, its actor and the pseudonymous subject.
_NAMES_A_PERSON = re.compile(r"(^|/)(users|creators)/")
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_CHARS = 256


def legacy_event_id(log_id: str, sequence: int) -> str:
    """UUIDv8 (RFC 9562): 48 bits naming the old outbox, the version, then the sequence."""
    log_bits = int.from_bytes(hashlib.sha256(log_id.encode()).digest()[:6]) << 80
    value = log_bits | 0x8 << 76 | 0x2 << 62 | sequence & ((1 << _SEQUENCE_BITS) - 1)
    return str(uuid.UUID(int=value))


def legacy_sequence_of(event_id_text: str) -> int:
    return uuid.UUID(event_id_text).int & ((1 << _SEQUENCE_BITS) - 1)


class PlatformEvents:
    """Turns gifts' audit events into the platform's, ready for `libs.audit.outbox.write_event`."""

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self._pseudonymizer = pseudonymizer

    def traced(self, event: AuditEvent, *, transfers: tuple[int, ...], trace: Trace,
               event_id: str | None = None) -> TracedEvent:
        return TracedEvent(self.platform_event(event, transfers=transfers, trace_id=trace.trace_id,
                                               event_id=event_id or str(uuid.uuid4())), dict(trace.context))

    def platform_event(self, event: AuditEvent, *, transfers: tuple[int, ...], trace_id: str,
                       event_id: str) -> PlatformAuditEvent:
        return platform_event(event, transfers=transfers, trace_id=trace_id, event_id=event_id,
                              pseudonymizer=self._pseudonymizer)


def platform_event(event: AuditEvent, *, transfers: tuple[int, ...], trace_id: str, event_id: str,
                   pseudonymizer: Pseudonymizer) -> PlatformAuditEvent:
    attributes = {"request_id": event.request_id, **event.details}
    if transfers:
        attributes["transfer_ids"] = ",".join(map(str, transfers))
    kept = {key: value[:MAX_ATTRIBUTE_CHARS] for key, value in attributes.items()
            if value and _ATTRIBUTE_KEY.match(key) and not _NAMES_A_PERSON.search(value)}
    return PlatformAuditEvent(
        event_id=event_id,
        actor=event.actor,
        action=f"gifts.{event.action}",
        resource=event.resource[:512],
        outcome=_OUTCOMES[event.outcome],
        reason=event.reason if _REASON.match(event.reason) else "",
        trace_id=trace_id,
        event_time=event.occurred_at,
        # Whom it is about: the user who acted (a service acting alone concerns nobody).
        subject_ref=pseudonymizer.subject_ref(event.actor if event.actor.startswith("users/") else ""),
        attributes=dict(list(kept.items())[:MAX_ATTRIBUTES]),
    )

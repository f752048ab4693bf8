"""The gifts audit outbox as the shared audit client ships it (`libs.audit.client.AuditOutbox`).

The ledger writes its audit events in the same transaction as the money they describe
(`store/unit.py`, table `audit_outbox`); `AuditClient` ships them to compliance's AppendEvents in
order, with retries, acknowledging or setting aside each one. This adapter turns an outbox
row into the platform's `AuditEvent`: action `gifts.<UseCase>`, the outcome compliance
knows, the actor's pseudonymous reference as the subject, and non-personal attributes.

Event ids are UUIDv8 holding the outbox's log id and the row's sequence, so the id of an
event never changes between deliveries and an acknowledgement says how far delivery got.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection

from libs.audit.events import AuditEvent as PlatformAuditEvent
from libs.audit.events import Outcome as PlatformOutcome
from libs.audit.pseudonyms import Pseudonymizer
from services.gifts.model.audit import Outcome, RecordedAuditEvent
from services.gifts.store.outbox import AuditOutboxStore

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


def event_id(log_id: str, sequence: int) -> str:
    """UUIDv8 (RFC 9562): 48 bits naming the outbox, the version, then the sequence."""
    log_bits = int.from_bytes(hashlib.sha256(log_id.encode()).digest()[:6]) << 80
    value = log_bits | 0x8 << 76 | 0x2 << 62 | sequence & ((1 << _SEQUENCE_BITS) - 1)
    return str(uuid.UUID(int=value))


def sequence_of(event_id_text: str) -> int:
    return uuid.UUID(event_id_text).int & ((1 << _SEQUENCE_BITS) - 1)


def platform_event(recorded: RecordedAuditEvent, *, log_id: str, pseudonymizer: Pseudonymizer) -> PlatformAuditEvent:
    event = recorded.event
    attributes = {"request_id": event.request_id, **event.details}
    if event.transfer_ids:
        attributes["transfer_ids"] = ",".join(map(str, event.transfer_ids))
    kept = {key: value[:MAX_ATTRIBUTE_CHARS] for key, value in attributes.items()
            if value and _ATTRIBUTE_KEY.match(key) and not _NAMES_A_PERSON.search(value)}
    return PlatformAuditEvent(
        event_id=event_id(log_id, recorded.sequence),
        actor=event.actor,
        action=f"gifts.{event.action}",
        resource=event.resource[:512],
        outcome=_OUTCOMES[event.outcome],
        reason=event.reason if _REASON.match(event.reason) else "",
        trace_id=event.trace_id,
        event_time=event.occurred_at,
        # Whom it is about: the user who acted (a service acting alone concerns nobody).
        subject_ref=pseudonymizer.subject_ref(event.actor if event.actor.startswith("users/") else ""),
        attributes=dict(list(kept.items())[:MAX_ATTRIBUTES]),
    )


class GiftsAuditOutbox:
    def __init__(self, store: AuditOutboxStore, pseudonymizer: Pseudonymizer) -> None:
        self._store = store
        self._pseudonymizer = pseudonymizer

    def pending(self, limit: int) -> list[PlatformAuditEvent]:
        log_id = self._store.log_id()
        recorded = self._store.events_after(self._store.delivered_through(), limit)
        return [platform_event(item, log_id=log_id, pseudonymizer=self._pseudonymizer) for item in recorded]

    def acknowledge(self, event_ids: Collection[str]) -> None:
        if event_ids:
            self._store.mark_delivered(max(sequence_of(event) for event in event_ids))

    def reject(self, event: PlatformAuditEvent, error: str) -> None:
        self._store.set_aside(sequence_of(event.event_id), error)

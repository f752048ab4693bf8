"""An audit event, its canonical bytes (the log's leaf data), and pseudonymous subject references.

Canonical encoding. The leaf data of an event is the JSON object of its fields with
keys sorted, no insignificant whitespace, UTF-8, the event time as an RFC 3339 UTC
string with microseconds, and a format version `v`. Every value is a string or an
integer, so this is the RFC 8785 (JCS) form of the object and any JCS library can
recompute it: a regulator needs nothing of ours to check a leaf hash.

Personal data. The log is append-only and handed to regulators, so it must hold no
direct identifiers (names, e-mail or IP addresses, free text written by users). The
person an event is about is recorded as `subject_ref`, an HMAC-SHA256 of their
identifier under a per-deployment secret: stable, so an officer can find every event
about one person; keyed, because identifiers are few and guessable and a plain hash of
`users/42` is reversed by hashing every candidate; one-way, so an erased person
(GDPR Art. 17) leaves only entries that nobody without the secret can link to them.
Actors and resources are Limelight resource names, which carry opaque ids only.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

CANONICAL_FORMAT_VERSION = 1


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True)
class AuditEvent:
    event_id: str
    actor: str
    """The principal that acted: `users/{user}` or `services/{service}`."""
    action: str
    """What was done, as the fully qualified RPC or a dotted verb (`gifts.gift.send`)."""
    resource: str
    outcome: Outcome
    reason: str
    trace_id: str
    occurred_at: dt.datetime
    subject_ref: str = ""
    """The pseudonymous reference of the person the event is about; '' if none."""

    def __post_init__(self) -> None:
        if self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must carry a time zone")
        # Microseconds are what the canonical form keeps; normalise so that an event
        # compares equal to itself after a round trip through storage.
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(dt.UTC))

    def record(self) -> dict[str, str | int]:
        """The fields as the canonical JSON object holds them."""
        return {
            "v": CANONICAL_FORMAT_VERSION,
            "event_id": self.event_id,
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "trace_id": self.trace_id,
            "occurred_at": self.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "subject_ref": self.subject_ref,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> AuditEvent:
        if record.get("v") != CANONICAL_FORMAT_VERSION:
            raise ValueError(f"unknown audit event format {record.get('v')!r}")
        return cls(
            event_id=str(record["event_id"]),
            actor=str(record["actor"]),
            action=str(record["action"]),
            resource=str(record["resource"]),
            outcome=Outcome(str(record["outcome"])),
            reason=str(record["reason"]),
            trace_id=str(record["trace_id"]),
            occurred_at=dt.datetime.strptime(str(record["occurred_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC),
            subject_ref=str(record["subject_ref"]),
        )

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.record())


def canonical_json(record: Mapping[str, object]) -> bytes:
    """The JCS form of a flat object of strings and integers.

    The verifier applies this to whatever object an export holds, valid or not, so an
    edited event is reported as changed rather than failing to parse.
    """
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def subject_reference(secret: bytes, subject: str) -> str:
    """The pseudonymous reference for `subject` (e.g. `users/42`) under the deployment's secret."""
    if len(secret) < 32:
        raise ValueError("the pseudonymisation secret must be at least 32 bytes")
    return hmac.new(secret, subject.encode(), hashlib.sha256).hexdigest()

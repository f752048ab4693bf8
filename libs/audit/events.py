"""An audit event and its canonical bytes: the log's leaf data.

Canonical encoding. The leaf data of an event is the JSON object of its fields with
keys sorted, no insignificant whitespace, UTF-8, the event time as an RFC 3339 UTC
string with microseconds, and a format version `v`. Every value is a string, an
integer or an object of strings, so this is the RFC 8785 (JCS) form of the object and
any JCS library can recompute it: a regulator needs nothing of ours to check a leaf.

Personal data: the log holds none; see `libs.audit.pseudonyms` for how the person an
event is about is recorded.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CANONICAL_FORMAT_VERSION = 1
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    DENIED = "denied"
    """Authentication or authorisation refused the caller."""
    REJECTED = "rejected"
    """A business rule refused the action."""
    FAILED = "failed"
    """A technical failure; the action had no effect."""


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    event_id: str
    actor: str
    """The principal that acted: `users/{user}` or `services/{service}`; '' if unauthenticated."""
    on_behalf_of: str = ""
    """The user a service acted for, if any."""
    action: str
    """What was done, as `<service>.<Method>` (`gifts.SendGift`)."""
    resource: str
    outcome: Outcome
    reason: str = ""
    trace_id: str = ""
    event_time: dt.datetime
    subject_ref: str = ""
    """The pseudonymous reference of the person the event is about; '' if none."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Non-personal facts that explain the event (amounts, limits, rule ids)."""

    def __post_init__(self) -> None:
        if self.event_time.utcoffset() is None:
            raise ValueError("event_time must carry a time zone")
        # UTC and sorted attributes: what the canonical form keeps, so that an event
        # compares equal to itself after a round trip through storage.
        object.__setattr__(self, "event_time", self.event_time.astimezone(dt.UTC))
        object.__setattr__(self, "attributes", dict(sorted(self.attributes.items())))

    def record(self) -> dict[str, object]:
        """The fields as the canonical JSON object holds them."""
        return {
            "v": CANONICAL_FORMAT_VERSION,
            "event_id": self.event_id,
            "actor": self.actor,
            "on_behalf_of": self.on_behalf_of,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "trace_id": self.trace_id,
            "event_time": self.event_time.strftime(_TIME_FORMAT),
            "subject_ref": self.subject_ref,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AuditEvent:
        if record.get("v") != CANONICAL_FORMAT_VERSION:
            raise ValueError(f"unknown audit event format {record.get('v')!r}")
        return cls(
            event_id=record["event_id"],
            actor=record["actor"],
            on_behalf_of=record["on_behalf_of"],
            action=record["action"],
            resource=record["resource"],
            outcome=Outcome(record["outcome"]),
            reason=record["reason"],
            trace_id=record["trace_id"],
            event_time=dt.datetime.strptime(record["event_time"], _TIME_FORMAT).replace(tzinfo=dt.UTC),
            subject_ref=record["subject_ref"],
            attributes=record["attributes"],
        )

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.record())


def canonical_json(record: Mapping[str, object]) -> bytes:
    """The JCS form of an object of strings, integers and such objects.

    The verifier applies this to whatever object an export holds, valid or not, so an
    edited event is reported as changed rather than failing to parse.
    """
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

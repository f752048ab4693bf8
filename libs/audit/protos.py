"""Audit events between the domain and `limelight.compliance.v1` messages."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp
from limelight.compliance.v1 import audit_pb2

from libs.audit.events import AuditEvent, Outcome

_OUTCOME_TO_PROTO = {
    Outcome.SUCCEEDED: audit_pb2.OUTCOME_SUCCEEDED,
    Outcome.DENIED: audit_pb2.OUTCOME_DENIED,
    Outcome.REJECTED: audit_pb2.OUTCOME_REJECTED,
    Outcome.FAILED: audit_pb2.OUTCOME_FAILED,
}
_OUTCOME_FROM_PROTO = {value: outcome for outcome, value in _OUTCOME_TO_PROTO.items()}


def outcome_to_proto(outcome: Outcome) -> audit_pb2.Outcome:
    return _OUTCOME_TO_PROTO[outcome]


def outcome_from_proto(value: audit_pb2.Outcome) -> Outcome | None:
    """None for OUTCOME_UNSPECIFIED (in a filter: any outcome)."""
    return _OUTCOME_FROM_PROTO.get(value)


def timestamp(moment: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def moment(stamp: Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)


def event_to_proto(event: AuditEvent) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        event_id=event.event_id,
        actor=event.actor,
        on_behalf_of=event.on_behalf_of,
        action=event.action,
        resource=event.resource,
        outcome=outcome_to_proto(event.outcome),
        reason=event.reason,
        trace_id=event.trace_id,
        event_time=timestamp(event.event_time),
        subject_ref=event.subject_ref,
        attributes=dict(event.attributes),
    )


def event_from_proto(message: audit_pb2.AuditEvent) -> AuditEvent:
    """A validated message (protovalidate ran at the edge) as a domain event."""
    outcome = outcome_from_proto(message.outcome)
    if outcome is None:
        raise ValueError("an audit event needs an outcome")
    return AuditEvent(
        event_id=message.event_id,
        actor=message.actor,
        on_behalf_of=message.on_behalf_of,
        action=message.action,
        resource=message.resource,
        outcome=outcome,
        reason=message.reason,
        trace_id=message.trace_id,
        event_time=moment(message.event_time),
        subject_ref=message.subject_ref,
        attributes=dict(message.attributes),
    )

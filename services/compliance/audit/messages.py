"""The audit area's messages: `limelight.compliance.v1` AuditService protos <-> the log's domain.

The event itself (`AuditEvent` <-> `audit_pb2.AuditEvent`) is shared with every service's
audit client and lives in `libs.audit.protos`; this module holds what only the log needs.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from limelight.compliance.v1 import audit_pb2

from libs.audit.events import AuditEvent
from libs.audit.protos import event_from_proto, event_to_proto, outcome_from_proto
from libs.errors import InvalidArgument
from libs.timestamps import from_timestamp, to_timestamp
from libs.tlog.hashing import leaf_hash
from services.compliance.audit.model import Appended, EventFilter, ExportedRecord, SequencedEvent, StoredCheckpoint
from services.compliance.audit.usecases import Pseudonyms

NANOS_PER_MICRO = 1000


def events_to_append(request: audit_pb2.AppendEventsRequest) -> list[AuditEvent]:
    """The request's events; an event time finer than a microsecond is refused, not rounded.

    The leaf's canonical form keeps microseconds, so two times that differ below that would
    log as the same event: a retry with other content would pass as a repeat.
    """
    for position, message in enumerate(request.events):
        if message.event_time.nanos % NANOS_PER_MICRO:
            raise InvalidArgument.for_field(
                f"events[{position}].event_time", "must be a whole number of microseconds; the log keeps no finer time",
                reason="EVENT_TIME_FINER_THAN_MICROSECONDS")
    return [event_from_proto(message) for message in request.events]


def appended_to_proto(appended: list[Appended]) -> audit_pb2.AppendEventsResponse:
    return audit_pb2.AppendEventsResponse(events=[
        audit_pb2.AppendedEvent(event_id=a.event_id, leaf_index=a.leaf_index, already_logged=not a.newly_appended)
        for a in appended
    ])


def filter_from_proto(message: audit_pb2.EventFilter, pseudonyms: Pseudonyms) -> EventFilter:
    subject_ref = pseudonyms.subject_ref(message.subject)
    if subject_ref and message.subject_ref and subject_ref != message.subject_ref:
        raise InvalidArgument.for_field("filter.subject_ref", "names another person than filter.subject")
    return EventFilter(
        subject_ref=subject_ref or message.subject_ref,
        actor=message.actor,
        action=message.action,
        resource=message.resource,
        outcome=outcome_from_proto(message.outcome),
        start_time=_time_if_set(message, "start_time"),
        end_time=_time_if_set(message, "end_time"),
    )


def _time_if_set(message: audit_pb2.EventFilter, name: Literal["start_time", "end_time"]) -> dt.datetime | None:
    return from_timestamp(getattr(message, name), field=f"filter.{name}") if message.HasField(name) else None


def checkpoint_to_proto(checkpoint: StoredCheckpoint, origin: str) -> audit_pb2.Checkpoint:
    return audit_pb2.Checkpoint(
        origin=origin,
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash,
        signed_note=checkpoint.signed_note,
        publish_time=to_timestamp(checkpoint.published_at),
    )


def logged_event_to_proto(logged: SequencedEvent) -> audit_pb2.LoggedEvent:
    return audit_pb2.LoggedEvent(
        event=event_to_proto(logged.event),
        leaf_index=logged.leaf_index,
        log_time=to_timestamp(logged.logged_at),
        leaf_hash=leaf_hash(logged.event.canonical_bytes()),
    )


def exported_event_to_proto(record: ExportedRecord) -> audit_pb2.ExportedEvent:
    message = audit_pb2.ExportedEvent(
        leaf_index=record.leaf_index,
        inclusion_proof=record.inclusion_proof,
        logged_leaf_hash=record.logged_leaf_hash,
        record_missing=record.logged is None,
    )
    if record.logged is not None:
        message.leaf_data = record.logged.event.canonical_bytes()
        message.event.CopyFrom(event_to_proto(record.logged.event))
        message.log_time.CopyFrom(to_timestamp(record.logged.logged_at))
    return message

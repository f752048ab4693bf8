"""The audit outbox delivered to compliance's AuditService (AppendEvents).

Appends are idempotent per `event_id`, which the store fixed when it wrote the event, so a
batch retried after a timeout or a crash is not logged twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.kit.clients import ServiceClients
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from services.gifts.audit import Outcome, RecordedAuditEvent
from services.gifts.messages import timestamp

_OUTCOMES = {
    Outcome.APPLIED: audit_pb2.OUTCOME_SUCCEEDED,
    Outcome.HELD: audit_pb2.OUTCOME_SUCCEEDED,
    Outcome.REFUSED: audit_pb2.OUTCOME_REJECTED,
    Outcome.DENIED: audit_pb2.OUTCOME_DENIED,
}
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_CHARS = 256


class ComplianceAuditSink:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def deliver(self, events: Sequence[RecordedAuditEvent]) -> None:
        stub = self._clients.stub("compliance", audit_pb2_grpc.AuditServiceStub)
        await stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[audit_event(event) for event in events]))


def audit_event(recorded: RecordedAuditEvent) -> audit_pb2.AuditEvent:
    event = recorded.event
    attributes = {"request_id": event.request_id, **event.details}
    if event.transfer_ids:
        attributes["transfer_ids"] = ",".join(map(str, event.transfer_ids))
    return audit_pb2.AuditEvent(
        event_id=recorded.event_id, actor=event.actor, action=f"gifts.{event.action}", resource=event.resource[:512],
        outcome=_OUTCOMES[event.outcome], reason=event.reason, trace_id=event.trace_id,
        event_time=timestamp(event.occurred_at_us),
        attributes={key: value[:MAX_ATTRIBUTE_CHARS] for key, value in list(attributes.items())[:MAX_ATTRIBUTES]
                    if value},
    )

"""`usecases.ports.AuditTrail` through the shared audit client: caller and trace taken on the request's task.

The use cases build their events inside a unit of work, on the committer's thread, where the
call's identity and trace context are not at hand; `CallAudit.of_call` takes them on the task
and each event is made from that template.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping

from libs.audit.client import AuditClient
from libs.audit.events import Outcome
from libs.audit.outbox import TracedEvent
from libs.audit.pseudonyms import Pseudonymizer


class CallAudit:
    def __init__(self, template: TracedEvent, pseudonymizer: Pseudonymizer) -> None:
        self._template = template
        self._pseudonymizer = pseudonymizer

    @classmethod
    def of_call(cls, audit: AuditClient, pseudonymizer: Pseudonymizer) -> CallAudit:
        return cls(audit.new_event(action="affiliate", resource="", outcome=Outcome.SUCCEEDED), pseudonymizer)

    def event(self, action: str, resource: str, *, reason: str = "", subject: str = "",
              attributes: Mapping[str, str] | None = None, rejected: bool = False,
              denied: bool = False) -> TracedEvent:
        """`rejected`: a business rule refused; `denied`: the caller may not (both are refusals)."""
        event = dataclasses.replace(
            self._template.event, event_id=str(uuid.uuid4()), action=action, resource=resource,
            outcome=Outcome.DENIED if denied else Outcome.REJECTED if rejected else Outcome.SUCCEEDED, reason=reason,
            subject_ref=self._pseudonymizer.subject_ref(subject), attributes=dict(attributes or {}))
        return TracedEvent(event, self._template.trace_context)

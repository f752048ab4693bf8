"""`usecases.ports.AuditTrail` through the shared audit client, for events made inside a unit of work.

The use cases build their events on the committer's thread, where the call's identity and
trace context are not at hand. `CallAudit.of_call` copies the call's context on its task (a
copy-on-write snapshot, nearly free) and every event is made inside that copy, so it names the
caller and continues the call's trace. A unit runs on one thread at a time, so the copy is never
entered twice at once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping

from libs.audit.client import AuditClient
from libs.audit.events import Outcome
from libs.audit.outbox import TracedEvent


class CallAudit:
    def __init__(self, audit: AuditClient, context: contextvars.Context) -> None:
        self._audit = audit
        self._context = context

    @classmethod
    def of_call(cls, audit: AuditClient) -> CallAudit:
        return cls(audit, contextvars.copy_context())

    def event(self, action: str, resource: str, *, reason: str = "", subject: str = "",
              attributes: Mapping[str, str] | None = None, rejected: bool = False,
              denied: bool = False) -> TracedEvent:
        """`rejected`: a business rule refused; `denied`: the caller may not (both are refusals)."""
        outcome = Outcome.DENIED if denied else Outcome.REJECTED if rejected else Outcome.SUCCEEDED
        return self._context.run(self._audit.new_event, action=action, resource=resource, outcome=outcome,
                                 reason=reason, subject=subject, attributes=dict(attributes or {}))

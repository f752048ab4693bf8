"""Ingest's audit events, built on the caller's task and written by the store with the change
they record (`libs.audit.outbox`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Principal
from libs.clock import Clock
from services.ingest.model import AiLabel, DisclosureVerdict, Video, publication_change
from services.ingest.usecases.ports import Pseudonyms, PublicationAudit, Tracing

SERVICE_SUBJECT = "services/ingest"  # the actor of what ingest decides on its own (publishing, holding)


class AuditEvents:
    """Builds ingest's audit events; the store writes them with the change they record.

    Resource names are the API's (`creators/{c}/uploads/{u}`, `creators/{c}/videos/{v}`);
    the person an event is about is recorded by pseudonymous reference only.
    """

    def __init__(self, *, clock: Clock, tracing: Tracing, pseudonyms: Pseudonyms) -> None:
        self._clock = clock
        self._tracing = tracing
        self._pseudonyms = pseudonyms

    def event(self, *, action: str, resource: str, outcome: Outcome, actor: Principal | None,
              creator_id: str, reason: str = "", attributes: Mapping[str, str] | None = None,
              trace_id: str | None = None, at: dt.datetime | None = None) -> AuditEvent:
        return AuditEvent(
            event_id=str(uuid.uuid4()),
            actor=actor.subject if actor is not None else SERVICE_SUBJECT,
            on_behalf_of=actor.on_behalf_of.subject if actor is not None and actor.on_behalf_of else "",
            action=action,
            resource=resource,
            outcome=outcome,
            reason=reason,
            trace_id=self._tracing.trace_id() if trace_id is None else trace_id,
            event_time=at or self._clock(),
            subject_ref=self._pseudonyms.subject_ref(f"users/{creator_id}"),
            attributes=attributes or {},
        )

    def verdicts(self, before: Video, after: Video, *, trace_id: str, at: dt.datetime) -> list[AuditEvent]:
        """`ingest.ReviewVideo` when compliance gave a verdict the video did not have: both
        verdicts, the rule set and the rules that fired, and what they mean for publication."""
        review = after.review
        answered = review.disclosure_verdict is not DisclosureVerdict.UNSPECIFIED or \
            review.ai_label is not AiLabel.UNSPECIFIED
        if not answered or _verdicts(before) == _verdicts(after):
            return []
        return [self.event(action="ingest.ReviewVideo", resource=after.name, outcome=Outcome.SUCCEEDED, actor=None,
                           creator_id=after.creator_id, reason=review.disclosure_verdict.value,
                           attributes={**review.audit_facts(), "publication": review.publication.value},
                           trace_id=trace_id, at=at)]

    def publication(self, *, trace_id: str, at: dt.datetime) -> PublicationAudit:
        """New verdicts, and a video becoming visible or being held, on the audit trail (DSA Art. 26).

        Ingest decides this itself on compliance's verdicts, so it is the actor."""
        def events(before: Video, after: Video) -> list[AuditEvent]:
            recorded = self.verdicts(before, after, trace_id=trace_id, at=at)
            action = publication_change(before, after)
            if not action:
                return recorded
            held = action == "ingest.HoldVideo"
            return [*recorded, self.event(action=action, resource=after.name, outcome=Outcome.SUCCEEDED, actor=None,
                                          creator_id=after.creator_id,
                                          reason=after.review.disclosure_verdict.value if held else "",
                                          attributes=after.review.audit_facts(), trace_id=trace_id, at=at)]

        return events


def _verdicts(video: Video) -> tuple[object, ...]:
    review = video.review
    return (review.disclosure_verdict, review.ai_label, review.ai_needs_review, review.required_disclosure_label,
            review.rules_version)

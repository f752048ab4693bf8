"""The consent use cases, over the ports declared here: the store, the audit events, the change feed.

Writes are awaited (the store's group committer commits them off the event loop); reads
block on SQLite, so the servicer runs `state`, `list_records` and `check` in a thread.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from libs.clock import Clock
from libs.pagination import PageTokens, page_size
from libs.privacy.subject_data import Erasure, RetentionException
from services.compliance.consent import tcf
from services.compliance.consent.model import (
    ConsentRecord,
    DecisionDraft,
    Method,
    Purpose,
    PurposeAnswer,
    Subject,
    SubjectState,
    check,
    decisions_from_tcf,
    fingerprint,
    require_may_consent,
)

RECORD_PAGES = PageTokens("compliance.ListConsentRecords")
DEFAULT_RECORD_PAGE = 100
_RECORD_IDS = uuid.UUID("3b0e4f52-2a7d-4c0b-8f5e-9c1d7a6e2b44")


class ConsentStore(Protocol):
    async def record(self, *, request_id: str, fingerprint: str, subject: str, records: Sequence[ConsentRecord],
                     events: Sequence[object], tc_string: str = "") -> list[ConsentRecord]:
        """Store `records` and `events` in one transaction under `request_id`, or return what the
        first request with that id stored (same fingerprint); another fingerprint raises
        AlreadyExists (REQUEST_ID_REUSED)."""
        ...

    def state(self, subject: str) -> SubjectState: ...

    def records(self, subject: str, purpose: Purpose | None, before: int | None,
                limit: int) -> list[ConsentRecord]: ...

    def latest_tc_string(self, subject: str) -> str: ...


class AuditEvents(Protocol):
    """Builds the audit event of one record on the request's task; the store writes it with the record."""

    def decided(self, record: ConsentRecord, method: str) -> object:
        """The event of `record`, written by the RPC `method` (its action is `compliance.<method>`)."""
        ...


@dataclass(frozen=True)
class RecordDecisions:
    """One request that records decisions: a single one (RecordConsent, WithdrawConsent) or a TC string's.

    `asked` is what the caller sent, and only that: a retry under the same request id must
    send the same, while values the server chose (a withdrawal's time) may differ.
    """

    subject: Subject
    request_id: str
    drafts: Sequence[DecisionDraft]
    recorded_by: str
    kind: str
    asked: Mapping[str, object]
    tc_string: str = ""


def record_id(request_id: str, index: int) -> str:
    """A record's id follows from its request, so a retried request names the same records."""
    return uuid.uuid5(_RECORD_IDS, f"{request_id}/{index}").hex


async def record_decisions(command: RecordDecisions, store: ConsentStore, audit: AuditEvents,
                           clock: Clock) -> list[ConsentRecord]:
    require_may_consent(command.subject, command.drafts)
    now = clock()
    pending = [ConsentRecord(record_id(command.request_id, index), command.subject.user, draft, now,
                             command.recorded_by, 0) for index, draft in enumerate(command.drafts)]
    return await store.record(
        request_id=command.request_id, fingerprint=fingerprint(command.kind, command.subject.user, command.asked),
        subject=command.subject.user, records=pending, events=[audit.decided(record, command.kind) for record in pending],
        tc_string=command.tc_string)


@dataclass(frozen=True)
class TcfConsent:
    subject: Subject
    request_id: str
    tc_string: str
    notice_version: str
    jurisdiction: str
    source: str
    recorded_by: str


async def record_tcf_consent(command: TcfConsent, store: ConsentStore, audit: AuditEvents,
                             clock: Clock) -> tuple[tcf.TcString, list[ConsentRecord]]:
    decoded = tcf.validate(command.tc_string, clock())
    drafts = [DecisionDraft(purpose, decision, command.notice_version, Method.TCF_CMP, decoded.last_updated,
                            command.jurisdiction, command.source)
              for purpose, decision in decisions_from_tcf(decoded.purposes_consent).items()]
    asked = {"tc_string": command.tc_string, "notice_version": command.notice_version,
             "jurisdiction": command.jurisdiction, "source": command.source}
    records = await record_decisions(RecordDecisions(command.subject, command.request_id, drafts, command.recorded_by,
                                                     "RecordTcfConsent", asked, command.tc_string),
                                     store, audit, clock)
    return decoded, records


@dataclass(frozen=True)
class RecordPage:
    records: list[ConsentRecord]
    next_page_token: str


def list_records(store: ConsentStore, subject: str, purpose: Purpose | None, requested_size: int,
                 page_token: str) -> RecordPage:
    bound_to = f"{subject}|{purpose.value if purpose else ''}"
    before = RECORD_PAGES.decode_int(page_token, bound_to=bound_to)
    size = page_size(requested_size, default=DEFAULT_RECORD_PAGE)
    found = store.records(subject, purpose, before, size + 1)
    page, more = found[:size], len(found) > size
    return RecordPage(page, RECORD_PAGES.encode(page[-1].version, bound_to=bound_to) if more else "")


@dataclass(frozen=True)
class ConsentView:
    state: SubjectState
    tc_string: str
    tc: tcf.TcString | None


def consent_state(store: ConsentStore, subject: str) -> ConsentView:
    tc_string = store.latest_tc_string(subject)
    return ConsentView(store.state(subject), tc_string, tcf.decode(tc_string) if tc_string else None)


class ConsentStates:
    """The subjects' current states in memory, for CheckConsent's hot path (used on the event loop only).

    Filled from the store on a miss (`remember`) and updated by every write's result
    (`apply`). A state never replaces a newer one, and a state read before a write that
    committed while the subject was not remembered is not kept either (`_floors`): a slow
    read cannot put a withdrawn grant back.
    """

    def __init__(self, *, capacity: int = 100_000) -> None:
        self._states: OrderedDict[str, SubjectState] = OrderedDict()
        self._floors: OrderedDict[str, int] = OrderedDict()  # the newest committed version per subject
        self._capacity = capacity

    def cached(self, subject: str) -> SubjectState | None:
        return self._states.get(subject)

    def remember(self, subject: str, state: SubjectState) -> None:
        known = self._states.get(subject)
        if state.version < self._floors.get(subject, 0) or (known is not None and known.version >= state.version):
            return
        self._states[subject] = state
        self._states.move_to_end(subject)
        while len(self._states) > self._capacity:
            self._states.popitem(last=False)

    def apply(self, subject: str, records: Sequence[ConsentRecord]) -> None:
        """Fold freshly committed records into the remembered state."""
        if not records:
            return
        newest = max(record.version for record in records)
        self._floors[subject] = max(newest, self._floors.get(subject, 0))
        self._floors.move_to_end(subject)
        while len(self._floors) > self._capacity:
            self._floors.popitem(last=False)
        known = self._states.get(subject)
        if known is None:
            return
        latest: dict[Purpose, ConsentRecord] = dict(known.latest)
        for record in sorted(records, key=lambda r: r.version):
            if record.version > known.version:
                latest[record.draft.purpose] = record
        self._states[subject] = SubjectState(max(known.version, newest), latest)


def check_consent(state: SubjectState, purposes: Sequence[Purpose], subject_is_minor: bool) -> list[PurposeAnswer]:
    """CheckConsent over a state already at hand (the hot path reads it from `ConsentStates`)."""
    return check(state, purposes, subject_is_minor=subject_is_minor)


def changed_purposes(records: Sequence[ConsentRecord]) -> Mapping[str, tuple[int, list[Purpose]]]:
    """{subject: (new version, purposes)} of freshly committed records: what the change feed announces."""
    changes: dict[str, tuple[int, list[Purpose]]] = {}
    for record in records:
        version, purposes = changes.get(record.subject, (0, []))
        changes[record.subject] = (max(version, record.version), [*purposes, record.draft.purpose])
    return changes


# -- the subject's part of a data-subject request (Art. 15, 17, 20) ------------------------------

CONSENT_RETENTION = RetentionException(
    "compliance.consent_records",
    "Art. 7(1) GDPR (the controller must be able to demonstrate each consent) with Art. 17(3)(e) (defence "
    "of legal claims): every decision is kept, append-only, for 3 years after the end of the year of the "
    "subject's last decision (§§ 195, 199 BGB)")
# A subject's decisions are a handful per purpose; the export reads them in one query.
EXPORT_LIMIT = 100_000


class ConsentHistory:
    """The subject's consent decisions as a source of a data-subject request: exported in full,
    and kept on erasure as the proof of consent the law asks for."""

    service = "services/compliance"

    def __init__(self, store: ConsentStore) -> None:
        self._store = store

    async def export(self, subject: str) -> dict[str, Any]:
        records = await asyncio.to_thread(self._store.records, subject, None, None, EXPORT_LIMIT)
        if not records:
            return {}
        return {"consent_records": [
            {"name": record.name, "purpose": record.draft.purpose.value, "decision": record.draft.decision.value,
             "notice_version": record.draft.notice_version, "method": record.draft.method.value,
             "decision_time": record.draft.decision_time.isoformat(), "jurisdiction": record.draft.jurisdiction,
             "source": record.draft.source, "record_time": record.record_time.isoformat(),
             "recorded_by": record.recorded_by, "version": record.version}
            for record in reversed(records)]}

    async def erase(self, subject: str) -> Erasure:
        return Erasure("consent decisions are kept as the proof of consent; nothing in them is deleted",
                       (CONSENT_RETENTION,))

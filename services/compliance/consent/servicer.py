"""ConsentService's gRPC handlers, and the area's entry point.

The compliance server wires this area with `build(runtime, append=...)`: it registers
`area.servicer` under `CONSENT`, merges `area.policy`, and calls `area.on_start()` /
`area.on_stop()` (the audit shipper of the area's outbox, and the store).

Who may call what is decided twice: the kit's role rule (`POLICY`) refuses callers without a
possible role; `RULES` then admits exactly the callers the proto comments name, for the
`parent` the request names.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc

from libs.audit.client import AppendEvents, AuditClient
from libs.audit.events import Outcome
from libs.audit.pseudonyms import Pseudonymizer
from libs.audit.spool import AuditSpool
from libs.auth.principal import Principal, Role
from libs.clock import Clock, utc_now
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.context import current_principal
from libs.kit.server import ServiceRuntime
from services.compliance.ads.model import ConsentAnswer
from services.compliance.consent import messages, usecases
from services.compliance.consent.config import ConsentConfig
from services.compliance.consent.model import (
    Access,
    Caller,
    ConsentRecord,
    Decision,
    DecisionDraft,
    Method,
    Purpose,
    Subject,
    SubjectState,
    require_access,
)
from services.compliance.consent.store import ConsentRecordStore

log = logging.getLogger(__name__)

CONSENT = "limelight.compliance.v1.ConsentService"
FOLLOW_SECONDS = 0.05
"""How often a replica looks for the records other replicas committed (a store they share)."""
FOLLOW_BATCH = 500
Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")

_USERS = frozenset({Role.VIEWER, Role.CREATOR, Role.MERCHANT})
_WRITERS = frozenset({Access.SUBJECT, Access.SERVICE_FOR_SUBJECT})
_READERS = frozenset({Access.SUBJECT, Access.SERVICE_FOR_SUBJECT, Access.OFFICER})
RULES: dict[str, frozenset[Access]] = {
    "RecordConsent": _WRITERS,
    "WithdrawConsent": _WRITERS,
    "RecordTcfConsent": _WRITERS,
    "ListConsentRecords": _READERS,
    "GetConsentState": _READERS,
    "CheckConsent": frozenset({Access.SUBJECT, Access.SERVICE}),
    "WatchConsentChanges": frozenset({Access.SERVICE}),
}
POLICY = AccessPolicy(roles=method_paths(CONSENT, {
    "RecordConsent": _USERS | {Role.SERVICE},
    "WithdrawConsent": _USERS | {Role.SERVICE},
    "RecordTcfConsent": _USERS | {Role.SERVICE},
    "ListConsentRecords": _USERS | {Role.SERVICE, Role.COMPLIANCE_OFFICER},
    "GetConsentState": _USERS | {Role.SERVICE, Role.COMPLIANCE_OFFICER},
    "CheckConsent": _USERS | {Role.SERVICE},
    "WatchConsentChanges": frozenset({Role.SERVICE}),
}))


def caller_of(principal: Principal) -> Caller:
    return Caller(subject=principal.subject, is_service=principal.is_service,
                  is_officer=principal.has_role(Role.COMPLIANCE_OFFICER),
                  on_behalf_of=principal.on_behalf_of.subject if principal.on_behalf_of else "")


def _user_principal(principal: Principal) -> Principal | None:
    """The end user's own verified token: the propagated one, or the caller's when the caller is a user."""
    if principal.on_behalf_of is not None:
        return principal.on_behalf_of
    return None if principal.is_service else principal


def subject_of(principal: Principal, user: str, today: dt.date) -> Subject:
    own = _user_principal(principal)
    return Subject(user, own.is_adult_on(today) if own is not None and own.subject == user else None)


class ConsentChanges:
    """Fans committed changes out to every WatchConsentChanges stream, on the event loop."""

    def __init__(self) -> None:
        self._watchers: set[asyncio.Queue[consent_pb2.WatchConsentChangesResponse]] = set()

    def publish(self, records: Sequence[ConsentRecord]) -> None:
        for subject, (version, purposes) in usecases.changed_purposes(records).items():
            change = messages.change_out(subject, version, purposes)
            for queue in self._watchers:
                queue.put_nowait(change)

    @contextlib.contextmanager
    def watching(self) -> Any:
        queue: asyncio.Queue[consent_pb2.WatchConsentChangesResponse] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            yield queue
        finally:
            self._watchers.discard(queue)


class KitAuditEvents:
    """`usecases.AuditEvents` through the shared client: built on the request's task."""

    def __init__(self, audit: AuditClient) -> None:
        self._audit = audit

    def decided(self, record: ConsentRecord, method: str) -> object:
        draft = record.draft
        return self._audit.new_event(
            action=f"compliance.{method}", resource=record.name, outcome=Outcome.SUCCEEDED,
            subject=record.subject, attributes={
                "purpose": draft.purpose.value, "decision": draft.decision.value, "method": draft.method.value,
                "notice_version": draft.notice_version, "jurisdiction": draft.jurisdiction, "source": draft.source})


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    def __init__(self, store: ConsentRecordStore, audit: usecases.AuditEvents, *, clock: Clock = utc_now,
                 config: ConsentConfig | None = None) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        # Replicas over one PostgreSQL share the history, and a state remembered here would miss what
        # another replica recorded (a withdrawal above all): there every check reads the store.
        capacity = 0 if store.shared_by_replicas else (config or ConsentConfig()).state_cache_size
        self._states = usecases.ConsentStates(capacity=capacity)
        self.changes = ConsentChanges()
        # Where replicas share the store, each announces the others' records too: `_follow` reads
        # them after `_followed_through`, skipping the ones this replica announced itself.
        self._follower: asyncio.Task[None] | None = None
        self._followed_through = 0
        self._announced_here: set[int] = set()

    async def start(self) -> None:
        """On a store other replicas write too, follow their records into this replica's change feed."""
        if self._store.shared_by_replicas:
            self._followed_through = await asyncio.to_thread(self._store.head)
            self._follower = asyncio.create_task(self._follow(), name="consent-follow-replicas")

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    async def _follow(self) -> None:
        while True:
            try:
                records = await asyncio.to_thread(self._store.records_after, self._followed_through, FOLLOW_BATCH)
            except Exception:
                log.exception("could not read the consent records of other replicas; retrying")
                await asyncio.sleep(1.0)
                continue
            # From here to the end of the loop body nothing awaits, so `_committed` sees either
            # none of this page or all of it.
            others = [record for record in records if record.version not in self._announced_here]
            self._announced_here.difference_update(record.version for record in records)
            if records:
                self._followed_through = records[-1].version
            if others:
                self.changes.publish(others)
            if len(records) < FOLLOW_BATCH:
                await asyncio.sleep(FOLLOW_SECONDS)

    async def _state(self, user: str) -> SubjectState:
        state = self._states.cached(user)
        if state is None:
            state = await asyncio.to_thread(self._store.state, user)
            self._states.remember(user, state)
        return state

    async def latest_decision(self, user: str, purpose: Purpose) -> Decision | None:
        """The user's standing decision on `purpose`, for the other areas of this process."""
        record = (await self._state(user)).latest.get(purpose)
        return None if record is None else record.draft.decision

    def _allow(self, method: str, user: str) -> Principal:
        principal = current_principal()
        require_access(caller_of(principal), user, RULES[method])
        return principal

    async def _committed(self, write: Coroutine[Any, Any, T], records_of: Callable[[T], list[ConsentRecord]]) -> T:
        """Run a write to the end and announce it, even when the caller stops waiting: a committed
        withdrawal that no cache hears of would stay permitted there."""
        async def write_and_announce() -> T:
            result = await write
            records = records_of(result)
            if records:
                self._states.apply(records[0].subject, records)
                if self._follower is not None:  # what the follower has not passed yet, it must skip
                    records = [record for record in records if record.version > self._followed_through]
                    self._announced_here.update(record.version for record in records)
                if records:
                    self.changes.publish(records)
            return result

        return await asyncio.shield(asyncio.ensure_future(write_and_announce()))

    async def _record(self, method: str, principal: Principal, user: str, request: Message,
                      drafts: list[DecisionDraft]) -> list[ConsentRecord]:
        asked = json_format.MessageToDict(request, preserving_proto_field_name=True)
        request_id = str(asked.pop("request_id", ""))
        command = usecases.RecordDecisions(subject_of(principal, user, self._clock().date()), request_id, drafts,
                                           principal.subject, method, asked)
        return await self._committed(usecases.record_decisions(command, self._store, self._audit, self._clock),
                                     lambda records: records)

    async def RecordConsent(self, request: consent_pb2.RecordConsentRequest,
                            context: Context) -> consent_pb2.RecordConsentResponse:
        user = messages.user_in(request.parent)
        principal = self._allow("RecordConsent", user)
        [record] = await self._record("RecordConsent", principal, user, request, [messages.draft_in(request)])
        return consent_pb2.RecordConsentResponse(record=messages.record_out(record))

    async def WithdrawConsent(self, request: consent_pb2.WithdrawConsentRequest,
                              context: Context) -> consent_pb2.WithdrawConsentResponse:
        user = messages.user_in(request.parent)
        principal = self._allow("WithdrawConsent", user)
        last = await asyncio.to_thread(self._store.state, user)
        earlier = last.latest.get(messages.purpose_in(request.purpose))
        draft = DecisionDraft(
            purpose=messages.purpose_in(request.purpose), decision=Decision.WITHDRAWN,
            notice_version=earlier.draft.notice_version if earlier else "none",
            method=messages.method_in(request.method, default=Method.SETTINGS_TOGGLE), decision_time=self._clock(),
            jurisdiction=request.jurisdiction, source=request.source)
        [record] = await self._record("WithdrawConsent", principal, user, request, [draft])
        return consent_pb2.WithdrawConsentResponse(record=messages.record_out(record))

    async def RecordTcfConsent(self, request: consent_pb2.RecordTcfConsentRequest,
                               context: Context) -> consent_pb2.RecordTcfConsentResponse:
        user = messages.user_in(request.parent)
        principal = self._allow("RecordTcfConsent", user)
        command = usecases.TcfConsent(subject_of(principal, user, self._clock().date()), request.request_id,
                                      request.tc_string, request.notice_version, request.jurisdiction, request.source,
                                      principal.subject)
        decoded, records = await self._committed(
            usecases.record_tcf_consent(command, self._store, self._audit, self._clock), lambda result: result[1])
        return consent_pb2.RecordTcfConsentResponse(tcf=messages.tcf_out(request.tc_string, decoded),
                                                    records=[messages.record_out(r) for r in records])

    async def ListConsentRecords(self, request: consent_pb2.ListConsentRecordsRequest,
                                 context: Context) -> consent_pb2.ListConsentRecordsResponse:
        user = messages.user_in(request.parent)
        self._allow("ListConsentRecords", user)
        purpose = messages.purpose_in(request.purpose) if request.purpose else None
        page = await asyncio.to_thread(usecases.list_records, self._store, user, purpose, request.page_size,
                                       request.page_token)
        return consent_pb2.ListConsentRecordsResponse(records=[messages.record_out(r) for r in page.records],
                                                      next_page_token=page.next_page_token)

    async def GetConsentState(self, request: consent_pb2.GetConsentStateRequest,
                              context: Context) -> consent_pb2.GetConsentStateResponse:
        user = messages.user_in(request.parent)
        self._allow("GetConsentState", user)
        view = await asyncio.to_thread(usecases.consent_state, self._store, user)
        return messages.state_out(view.state, view.tc_string, view.tc)

    async def CheckConsent(self, request: consent_pb2.CheckConsentRequest,
                           context: Context) -> consent_pb2.CheckConsentResponse:
        user = messages.user_in(request.parent)
        principal = self._allow("CheckConsent", user)
        state = await self._state(user)
        subject = subject_of(principal, user, self._clock().date())
        answers = usecases.check_consent(state, messages.purposes_in(request.purposes),
                                         subject_is_minor=subject.adult is False)
        return messages.check_out(answers, state.version)

    async def WatchConsentChanges(self, request: consent_pb2.WatchConsentChangesRequest,
                                  context: Context) -> AsyncIterator[consent_pb2.WatchConsentChangesResponse]:
        principal = current_principal()
        require_access(caller_of(principal), principal.on_behalf_of.subject if principal.on_behalf_of else "",
                       RULES["WatchConsentChanges"])
        # Subscribe before reading the head, so no change between the two is lost.
        with self.changes.watching() as queue:
            yield consent_pb2.WatchConsentChangesResponse(sequence=await asyncio.to_thread(self._store.head))
            while True:
                yield await queue.get()


class AdProfilingAnswers:
    """The ad repository's `AdProfilingConsent` port, answered by this area in the same process."""

    def __init__(self, servicer: ConsentServicer) -> None:
        self._servicer = servicer

    async def ad_profiling(self, viewer: str) -> ConsentAnswer:
        decision = await self._servicer.latest_decision(viewer, Purpose.PERSONALISED_ADS)
        if decision is None:
            return ConsentAnswer.UNKNOWN
        return ConsentAnswer.GRANTED if decision is Decision.GRANTED else ConsentAnswer.REFUSED


@dataclass
class ConsentArea:
    """What consent adds to the compliance server."""

    servicer: ConsentServicer
    store: ConsentRecordStore
    audit: AuditClient
    policy: AccessPolicy = POLICY
    service_name: str = CONSENT

    @property
    def subject_data(self) -> usecases.ConsentHistory:
        """The subject's decisions, for data-subject requests (privacy gathers them)."""
        return usecases.ConsentHistory(self.store)

    @property
    def ad_profiling(self) -> AdProfilingAnswers:
        return AdProfilingAnswers(self.servicer)

    async def on_start(self) -> None:
        await self.audit.start()
        await self.servicer.start()

    async def on_stop(self) -> None:
        await self.servicer.stop()
        await self.audit.stop()
        await asyncio.to_thread(self.store.close)


def build(runtime: ServiceRuntime, *, append: AppendEvents, clock: Clock = utc_now,
          config: ConsentConfig | None = None) -> ConsentArea:
    """The area over `<data>/compliance/consent.db`; `append` delivers its audit events to the audit log."""
    store = ConsentRecordStore.open(runtime.data_root)
    audit = AuditClient(service="compliance", spool=AuditSpool.open("compliance", runtime.data_root, area="consent-audit-spool"),
                        append=append, pseudonymizer=Pseudonymizer.for_deployment(runtime.data_root), clock=clock,
                        outbox=store.audit_outbox, telemetry=runtime.telemetry)
    store.add_commit_listener(audit.wake_shipper)
    servicer = ConsentServicer(store, KitAuditEvents(audit), clock=clock, config=config or ConsentConfig.from_environment())
    return ConsentArea(servicer, store, audit)


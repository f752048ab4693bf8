"""Compliance: the audit trail, consent, disclosure rules, AI labels and data-subject requests.

The contract is in protos/limelight/compliance/v1/. RPCs not built yet answer UNIMPLEMENTED.

AuditService handlers only translate: proto -> domain call -> proto. Appends go through
the group-commit sequencer (durable before the reply); reads go to the store's reader
connection. Officers' queries and exports, and every refused call to the service, are
themselves appended to the log before anything is returned.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc

from libs.audit.events import AuditEvent, Outcome
from libs.audit.protos import event_from_proto, event_to_proto, moment, outcome_from_proto, timestamp
from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.principal import Principal, Role
from libs.clock import Clock, utc_now
from libs.errors import DomainError, InvalidArgument
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.context import current_principal
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from libs.kit.telemetry import current_ids
from libs.tlog.hashing import leaf_hash
from services.compliance.auditlog import (
    Appended,
    AuditLog,
    EventFilter,
    ExportedRecord,
    SequencedEvent,
    StoredCheckpoint,
)
from services.compliance.keys import load_or_create_signing_key
from services.compliance.sequencer import Sequencer, start_sequencer
from services.compliance.store import SqliteAuditStore

logger = logging.getLogger(__name__)

AUDIT = "limelight.compliance.v1.AuditService"
DEFAULT_ORIGIN = "limelight.local/audit"
EXPORT_CHUNK = 500


def checkpoint_to_proto(checkpoint: StoredCheckpoint, origin: str) -> audit_pb2.Checkpoint:
    return audit_pb2.Checkpoint(
        origin=origin,
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash,
        signed_note=checkpoint.signed_note,
        publish_time=timestamp(checkpoint.published_at),
    )


def logged_event_to_proto(logged: SequencedEvent) -> audit_pb2.LoggedEvent:
    return audit_pb2.LoggedEvent(
        event=event_to_proto(logged.event),
        leaf_index=logged.leaf_index,
        log_time=timestamp(logged.logged_at),
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
        message.log_time.CopyFrom(timestamp(record.logged.logged_at))
    return message


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, log: AuditLog, pseudonymizer: Pseudonymizer, *, clock: Clock = utc_now) -> None:
        self._log = log
        self._pseudonymizer = pseudonymizer
        self._clock = clock
        self._sequencer: Sequencer | None = None

    def start(self) -> None:
        self._sequencer = start_sequencer(self._log)

    def stop(self) -> None:
        if self._sequencer is not None:
            self._sequencer.stop()

    async def _append(self, events: list[AuditEvent]) -> list[Appended]:
        assert self._sequencer is not None, "the servicer serves only between start() and stop()"
        return await asyncio.wrap_future(self._sequencer.submit(events))

    # -- RPCs ---------------------------------------------------------------------

    async def AppendEvents(
        self, request: audit_pb2.AppendEventsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.AppendEventsResponse:
        appended = await self._append([event_from_proto(event) for event in request.events])
        return audit_pb2.AppendEventsResponse(events=[
            audit_pb2.AppendedEvent(event_id=a.event_id, leaf_index=a.leaf_index, already_logged=not a.newly_appended)
            for a in appended
        ])

    async def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.GetCheckpointResponse:
        return audit_pb2.GetCheckpointResponse(
            checkpoint=checkpoint_to_proto(self._log.latest_checkpoint(), self._log.origin))

    async def GetInclusionProof(
        self, request: audit_pb2.GetInclusionProofRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.GetInclusionProofResponse:
        by_id = request.WhichOneof("leaf") == "event_id"
        proof = self._log.inclusion_proof(
            event_id=request.event_id if by_id else "",
            leaf_index=None if by_id else request.leaf_index,
            tree_size=request.tree_size,
        )
        response = audit_pb2.GetInclusionProofResponse(
            leaf_index=proof.leaf_index, tree_size=proof.tree_size, hashes=proof.hashes)
        checkpoint = self._log.checkpoint_at(proof.tree_size)
        if checkpoint is not None:
            response.checkpoint.CopyFrom(checkpoint_to_proto(checkpoint, self._log.origin))
        return response

    async def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.GetConsistencyProofResponse:
        proof = self._log.consistency_proof(first_size=request.first_size, second_size=request.second_size)
        return audit_pb2.GetConsistencyProofResponse(
            first_size=proof.first_size, second_size=proof.second_size, hashes=proof.hashes)

    async def QueryEvents(
        self, request: audit_pb2.QueryEventsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.QueryEventsResponse:
        event_filter = self._filter(request.filter)
        try:
            page = await asyncio.to_thread(
                self._log.query, event_filter, page_size=request.page_size, page_token=request.page_token)
        except DomainError as error:
            await self._record_access("compliance.QueryEvents", event_filter, Outcome.REJECTED, error.reason)
            raise
        await self._record_access("compliance.QueryEvents", event_filter, Outcome.SUCCEEDED,
                                  attributes={"results": str(len(page.events))})
        return audit_pb2.QueryEventsResponse(
            events=[logged_event_to_proto(logged) for logged in page.events], next_page_token=page.next_page_token)

    async def ExportEvents(
        self, request: audit_pb2.ExportEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.ExportEventsResponse]:
        event_filter = self._filter(request.filter)
        try:
            export = await asyncio.to_thread(
                self._log.export, event_filter, start_index=request.start_index, end_index=request.end_index,
                tree_size=request.tree_size)
        except DomainError as error:
            await self._record_access("compliance.ExportEvents", event_filter, Outcome.REJECTED, error.reason)
            raise
        await self._record_access("compliance.ExportEvents", event_filter, Outcome.SUCCEEDED, attributes={
            "tree_size": str(export.checkpoint.tree_size),
            "start_index": str(request.start_index), "end_index": str(request.end_index)})
        yield audit_pb2.ExportEventsResponse(header=audit_pb2.ExportHeader(
            checkpoint=checkpoint_to_proto(export.checkpoint, self._log.origin),
            verifier_key=self._log.verifier.key_string(),
            request=request,
        ))
        while chunk := await asyncio.to_thread(_take, export.records, EXPORT_CHUNK):
            for record in chunk:
                yield audit_pb2.ExportEventsResponse(event=exported_event_to_proto(record))

    async def GetPublicKey(
        self, request: audit_pb2.GetPublicKeyRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.GetPublicKeyResponse:
        verifier = self._log.verifier
        return audit_pb2.GetPublicKeyResponse(
            origin=self._log.origin, public_key=verifier.public_key, verifier_key=verifier.key_string())

    # -- auditing the auditors --------------------------------------------------------

    def _filter(self, message: audit_pb2.EventFilter) -> EventFilter:
        subject_ref = self._pseudonymizer.subject_ref(message.subject)
        if subject_ref and message.subject_ref and subject_ref != message.subject_ref:
            raise InvalidArgument.for_field("filter.subject_ref", "names another person than filter.subject")
        return EventFilter(
            subject_ref=subject_ref or message.subject_ref,
            actor=message.actor,
            action=message.action,
            resource=message.resource,
            outcome=outcome_from_proto(message.outcome),
            start_time=moment(message.start_time) if message.HasField("start_time") else None,
            end_time=moment(message.end_time) if message.HasField("end_time") else None,
        )

    async def _record_access(
        self, action: str, event_filter: EventFilter, outcome: Outcome, reason: str = "",
        attributes: dict[str, str] | None = None,
    ) -> None:
        """Log an officer's look at the log, durably, before they see anything."""
        searched = {name: value for name, value in (
            ("filter_actor", event_filter.actor), ("filter_action", event_filter.action),
            ("filter_resource", event_filter.resource),
            ("filter_outcome", event_filter.outcome.value if event_filter.outcome else ""),
            ("filter_start_time", event_filter.start_time.isoformat() if event_filter.start_time else ""),
            ("filter_end_time", event_filter.end_time.isoformat() if event_filter.end_time else ""),
        ) if value}
        await self._append([self._access_event(
            current_principal(), action, outcome, reason, event_filter.subject_ref, {**searched, **(attributes or {})})])

    def _access_event(
        self, principal: Principal | None, action: str, outcome: Outcome, reason: str, subject_ref: str = "",
        attributes: dict[str, str] | None = None,
    ) -> AuditEvent:
        on_behalf_of = principal.on_behalf_of.subject if principal and principal.on_behalf_of else ""
        return AuditEvent(
            event_id=str(uuid.uuid4()), actor=principal.subject if principal else "", on_behalf_of=on_behalf_of,
            action=action, resource="", outcome=outcome, reason=reason, trace_id=current_ids().trace_id,
            event_time=self._clock(), subject_ref=subject_ref, attributes=attributes or {},
        )

    async def record_denial(self, method: str, principal: Principal | None, error: DomainError) -> None:
        """The kit's hook for refused calls: a refused look at the log is logged too."""
        try:
            await self._append([self._access_event(
                principal, f"compliance.{method.rsplit('/', 1)[-1]}", Outcome.DENIED, error.reason)])
        except Exception:
            logger.exception("could not audit a refused call to %s", method)


def _take(records: Iterator[ExportedRecord], count: int) -> list[ExportedRecord]:
    return list(itertools.islice(records, count))


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    origin = os.environ.get("LIMELIGHT_AUDIT_ORIGIN", DEFAULT_ORIGIN)
    store = SqliteAuditStore.open(runtime.data_root)
    log = AuditLog(store, load_or_create_signing_key(runtime.data_root / "compliance", origin), clock=utc_now)
    audit = AuditServicer(log, Pseudonymizer.for_deployment(runtime.data_root))

    async def on_start() -> None:
        audit.start()

    def on_stop() -> None:
        audit.stop()
        store.close()

    return package_definition(
        "limelight.compliance.v1",
        {AUDIT: audit},
        policy=AccessPolicy(
            # What a verifier needs is public: anyone holding the key may check the log.
            public=frozenset(method_paths(AUDIT, dict.fromkeys(
                ("GetPublicKey", "GetCheckpoint", "GetConsistencyProof"), frozenset()))),
            roles=method_paths(AUDIT, {
                "AppendEvents": frozenset({Role.SERVICE}),
                "QueryEvents": frozenset({Role.COMPLIANCE_OFFICER}),
                "ExportEvents": frozenset({Role.COMPLIANCE_OFFICER}),
            }),
        ),
        on_start=on_start,
        on_stop=on_stop,
        on_denied=audit.record_denial,
    )

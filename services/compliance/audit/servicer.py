"""AuditService handlers: proto -> domain call -> proto, and nothing else.

Appends go through the group-commit sequencer (durable before the reply); reads run on
the store's reader connection in a worker thread, never on the event loop. Officers'
queries and exports are appended to the log before anything is returned; refused calls
are logged through `record_denial` (the kit's `on_denied` hook).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import grpc
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Principal
from libs.clock import Clock
from libs.errors import DomainError
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.context import current_peer, current_principal
from libs.kit.shedding import peer_host
from libs.kit.telemetry import current_ids
from services.compliance.audit.messages import (
    appended_to_proto,
    checkpoint_to_proto,
    events_to_append,
    exported_event_to_proto,
    filter_from_proto,
    logged_event_to_proto,
)
from services.compliance.audit.model import (
    METHOD_ROLES,
    PUBLIC_METHODS,
    Appended,
    EventFilter,
    ExportedRecord,
    InclusionProof,
    StoredCheckpoint,
    UnauthenticatedDenials,
    access_event,
    action_of_method,
    require_own_events,
)
from services.compliance.audit.queries import AuditQueries
from services.compliance.audit.sequencer import Sequencer
from services.compliance.audit.store import AuditLogStore
from services.compliance.audit.usecases import AuditLog, CountedDenials, Pseudonyms

logger = logging.getLogger(__name__)

AUDIT = "limelight.compliance.v1.AuditService"
EXPORT_CHUNK = 500


def access_policy() -> AccessPolicy:
    """The domain's access rules (`model.METHOD_ROLES`, `model.PUBLIC_METHODS`) as the kit enforces them."""
    return AccessPolicy(
        public=frozenset(method_paths(AUDIT, dict.fromkeys(PUBLIC_METHODS, frozenset()))),
        roles=method_paths(AUDIT, METHOD_ROLES),
    )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(
        self, log: AuditLog, store: AuditLogStore, pseudonyms: Pseudonyms, denials: UnauthenticatedDenials, *,
        clock: Clock,
    ) -> None:
        self._log = log
        self._store = store
        self._queries = AuditQueries(store)
        self._pseudonyms = pseudonyms
        self._denials = denials
        self._counted = CountedDenials(log, denials, pseudonyms, clock=clock)
        self._clock = clock
        self._sequencer: Sequencer | None = None

    def start(self) -> None:
        self._sequencer = Sequencer(self._log, self._store, before_checkpoint=self._counted.log_closed_windows)

    def stop(self) -> None:
        if self._sequencer is not None:
            self._sequencer.stop()
            self._counted.log_every_window()

    async def append_own(self, events: Sequence[AuditEvent]) -> list[Appended]:
        """Compliance's own events (its areas' outboxes), appended in process: the shipper's `append`."""
        return await self._append(list(events))

    async def _append(self, events: list[AuditEvent]) -> list[Appended]:
        assert self._sequencer is not None, "the servicer serves only between start() and stop()"
        return await self._sequencer.append(events)

    # -- RPCs ---------------------------------------------------------------------

    async def AppendEvents(
        self, request: audit_pb2.AppendEventsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> audit_pb2.AppendEventsResponse:
        events = events_to_append(request)
        require_own_events(current_principal(), events)
        return appended_to_proto(await self._append(events))

    async def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> audit_pb2.GetCheckpointResponse:
        checkpoint = await asyncio.to_thread(self._queries.latest_checkpoint)
        return audit_pb2.GetCheckpointResponse(checkpoint=checkpoint_to_proto(checkpoint, self._log.origin))

    async def GetInclusionProof(
        self, request: audit_pb2.GetInclusionProofRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> audit_pb2.GetInclusionProofResponse:
        by_id = request.WhichOneof("leaf") == "event_id"

        def prove() -> tuple[InclusionProof, StoredCheckpoint | None]:
            proof = self._queries.inclusion_proof(
                event_id=request.event_id if by_id else "",
                leaf_index=None if by_id else request.leaf_index,
                tree_size=request.tree_size,
            )
            return proof, self._queries.checkpoint_at(proof.tree_size)

        proof, checkpoint = await asyncio.to_thread(prove)
        response = audit_pb2.GetInclusionProofResponse(
            leaf_index=proof.leaf_index, tree_size=proof.tree_size, hashes=proof.hashes)
        if checkpoint is not None:
            response.checkpoint.CopyFrom(checkpoint_to_proto(checkpoint, self._log.origin))
        return response

    async def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> audit_pb2.GetConsistencyProofResponse:
        proof = await asyncio.to_thread(
            lambda: self._queries.consistency_proof(first_size=request.first_size, second_size=request.second_size))
        return audit_pb2.GetConsistencyProofResponse(
            first_size=proof.first_size, second_size=proof.second_size, hashes=proof.hashes)

    async def QueryEvents(
        self, request: audit_pb2.QueryEventsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> audit_pb2.QueryEventsResponse:
        event_filter = filter_from_proto(request.filter, self._pseudonyms)
        try:
            page = await asyncio.to_thread(
                self._queries.query, event_filter, page_size=request.page_size, page_token=request.page_token)
        except DomainError as error:
            await self._record_access("compliance.QueryEvents", event_filter, Outcome.REJECTED, error.reason)
            raise
        await self._record_access("compliance.QueryEvents", event_filter, Outcome.SUCCEEDED,
                                  attributes={"results": str(len(page.events))})
        return audit_pb2.QueryEventsResponse(
            events=[logged_event_to_proto(logged) for logged in page.events], next_page_token=page.next_page_token)

    async def ExportEvents(
        self, request: audit_pb2.ExportEventsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[audit_pb2.ExportEventsResponse]:
        event_filter = filter_from_proto(request.filter, self._pseudonyms)
        try:
            export = await asyncio.to_thread(
                self._queries.export, event_filter, start_index=request.start_index, end_index=request.end_index,
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
        self, request: audit_pb2.GetPublicKeyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> audit_pb2.GetPublicKeyResponse:
        verifier = self._log.verifier
        return audit_pb2.GetPublicKeyResponse(
            origin=self._log.origin, public_key=verifier.public_key, verifier_key=verifier.key_string())

    # -- auditing the auditors --------------------------------------------------------

    async def _record_access(
        self, action: str, event_filter: EventFilter, outcome: Outcome, reason: str = "",
        attributes: dict[str, str] | None = None,
    ) -> None:
        """Log an officer's look at the log, durably, before they see anything."""
        await self._append([access_event(
            current_principal(), event_id=str(uuid.uuid4()), action=action, outcome=outcome, reason=reason,
            trace_id=current_ids().trace_id, at=self._clock(), subject_ref=event_filter.subject_ref,
            attributes={**event_filter.searched(), **(attributes or {})})])

    async def record_denial(self, method: str, principal: Principal | None, error: DomainError) -> None:
        """The kit's hook for refused calls.

        A caller who presented a valid token is accountable: their refusal is its own
        event, durable before the refusal is answered. A call without one is counted, per
        peer, method and reason, and logged as one event when the counting window closes.
        """
        if principal is None:
            self._denials.count(peer=peer_host(current_peer()), method=method, reason=error.reason, at=self._clock())
            return
        try:
            await self._append([access_event(
                principal, event_id=str(uuid.uuid4()), action=action_of_method(method), outcome=Outcome.DENIED,
                reason=error.reason, trace_id=current_ids().trace_id, at=self._clock())])
        except Exception:
            logger.exception("could not audit a refused call to %s", method)


def _take(records: Iterator[ExportedRecord], count: int) -> list[ExportedRecord]:
    return list(itertools.islice(records, count))

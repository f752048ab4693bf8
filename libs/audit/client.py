"""The audit client every service uses to put its state changes on the audit trail.

    audit = AuditClient.for_runtime(runtime)            # in build(); start/stop in on_start/on_stop
    await audit.record(action="gifts.SendGift", resource=gift.name, outcome=Outcome.SUCCEEDED,
                       subject=viewer.subject, attributes={"coins": "30"})

`record` fills in who acted (the call's principal, and the user a service acts for), the
trace id and the time, turns the subject into its pseudonymous reference, and returns
once the event is durable in the service's local spool: a group-committed SQLite write,
a fraction of a millisecond, never a network round trip. If the spool cannot take the
event, `record` raises UNAVAILABLE and the originating call fails: an event is either
buffered durably or its call did not succeed. Call it before replying.

A background task ships spooled events to compliance's AppendEvents in batches, in the
order they were recorded, retrying with backoff while compliance is unreachable (event
ids make a retried batch harmless) and removing events only once acknowledged. An event
compliance refuses for good is moved aside (`AuditSpool.reject`) after it was isolated
from its batch, so one bad event never blocks the others.

A service whose state change and audit event must commit together writes them into its
own store in the same transaction (`libs.audit.outbox`: build the event with `new_event` on
the request's task, write it with `write_event(tx, ...)` in the unit of work) and gives the
shipper that store's `DatabaseAuditOutbox` as well; `wake_shipper` (a commit listener) makes
it ship at once. The spool is shipped too, so such a service may still `record` what has
no transaction of its own (a denial before any use case ran). Every event carries the trace context of the call that recorded it, and
the shipper's AppendEvents call runs in a span that is a child of the first event's span
and links to every event's span, so an audit append belongs to the trace that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Protocol

import grpc
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc

from libs.audit.events import AuditEvent, Outcome
from libs.audit.outbox import TracedEvent
from libs.audit.protos import event_to_proto
from libs.audit.pseudonyms import Pseudonymizer
from libs.audit.spool import AuditSpool
from libs.clock import Clock, utc_now
from libs.errors import Unavailable
from libs.kit.context import current_identity
from libs.kit.server import ServiceRuntime
from libs.kit.telemetry import Telemetry, current_ids, inject_carrier, span_linked_to

logger = logging.getLogger(__name__)

AppendEvents = Callable[[Sequence[AuditEvent]], Awaitable[object]]

MAX_BATCH = 1000  # AppendEventsRequest's limit
# Codes after which resending the same batch cannot succeed: find the event at fault.
# PERMISSION_DENIED is compliance refusing an event this service may not append (another
# service's action or actor): set aside, never retried forever in front of the others.
_REFUSED_FOR_GOOD = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS,
                     grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED}


class AuditOutbox(Protocol):
    # A bare AuditEvent (no trace context) is still accepted from outboxes not yet on
    # `libs.audit.outbox` (gifts' own, until it moves).
    def pending(self, limit: int) -> Sequence[TracedEvent | AuditEvent]: ...
    def acknowledge(self, event_ids: Collection[str]) -> None: ...
    def reject(self, event: AuditEvent, error: str) -> None: ...


def compliance_appender(stub: audit_pb2_grpc.AuditServiceAsyncStub, *, timeout: float = 10.0) -> AppendEvents:
    async def append(events: Sequence[AuditEvent]) -> object:
        request = audit_pb2.AppendEventsRequest(events=[event_to_proto(event) for event in events])
        return await stub.AppendEvents(request, timeout=timeout)

    return append


class AuditClient:
    def __init__(
        self,
        *,
        service: str,
        spool: AuditSpool,
        append: AppendEvents,
        pseudonymizer: Pseudonymizer,
        clock: Clock,
        outbox: AuditOutbox | None = None,
        telemetry: Telemetry | None = None,
        batch_size: int = 500,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._service = service
        self._spool = spool
        # The service's own outbox first, then the spool `record` writes to: both are shipped.
        self._outboxes: list[AuditOutbox] = [spool] if outbox is None else [outbox, spool]
        self._append = append
        self._pseudonymizer = pseudonymizer
        self._clock = clock
        self._batch_size = min(batch_size, MAX_BATCH)
        self._max_backoff = max_backoff_seconds
        self._telemetry = telemetry
        self._recorded = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shipper: asyncio.Task[None] | None = None

    @classmethod
    def for_runtime(cls, runtime: ServiceRuntime, *, outbox: AuditOutbox | None = None) -> AuditClient:
        """The client of a service built by the kit; `outbox` is the service's own, if it has one."""
        return cls(
            service=runtime.name,
            spool=AuditSpool.open(runtime.name, runtime.data_root),
            append=compliance_appender(runtime.clients.stub("compliance", audit_pb2_grpc.AuditServiceStub)),
            pseudonymizer=Pseudonymizer.for_deployment(runtime.data_root),
            clock=utc_now,
            outbox=outbox,
            telemetry=runtime.telemetry,
        )

    def wake_shipper(self) -> None:
        """Ship now rather than at the next poll; safe from any thread (use it as a commit listener)."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing is shipping any more
                self._loop.call_soon_threadsafe(self._recorded.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # The shipper must not inherit a caller's identity: it acts as the service itself.
        self._shipper = asyncio.create_task(self._ship_forever(), name=f"{self._service}-audit-shipper",
                                            context=contextvars.Context())

    async def stop(self, *, flush_seconds: float = 2.0) -> None:
        """Ship what compliance will take within `flush_seconds`; the rest waits in the spool."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), flush_seconds)
        if self._shipper is not None:
            self._shipper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._shipper
        await asyncio.to_thread(self._spool.close)  # commits what is queued: an fsync, off the loop

    async def record(
        self,
        *,
        action: str,
        resource: str,
        outcome: Outcome,
        reason: str = "",
        subject: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> AuditEvent:
        """Record what this call did; returns once the event cannot be lost."""
        traced = self.new_event(action=action, resource=resource, outcome=outcome, reason=reason, subject=subject,
                                attributes=attributes)
        try:
            await asyncio.wrap_future(self._spool.add([traced]))
        except Exception as error:
            raise Unavailable("the audit trail cannot take the event, so the change is refused",
                              reason="AUDIT_UNAVAILABLE") from error
        self._recorded.set()
        return traced.event

    def new_event(
        self,
        *,
        action: str,
        resource: str,
        outcome: Outcome,
        reason: str = "",
        subject: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> TracedEvent:
        """The event of what this call did, for `libs.audit.outbox.write_event`; call it on the call's task.

        It fills in who acted, the trace and the time from the current call, and turns the
        subject into its pseudonymous reference; it writes nothing.
        """
        identity = current_identity()
        principal = identity.principal if identity is not None else None
        event = AuditEvent(
            event_id=str(uuid.uuid4()),
            actor=principal.subject if principal is not None else f"services/{self._service}",
            on_behalf_of=principal.on_behalf_of.subject if principal is not None and principal.on_behalf_of else "",
            action=action,
            resource=resource,
            outcome=outcome,
            reason=reason,
            trace_id=current_ids().trace_id,
            event_time=self._clock(),
            subject_ref=self._pseudonymizer.subject_ref(subject),
            attributes=attributes or {},
        )
        return TracedEvent(event, inject_carrier())

    async def _drained(self) -> None:
        while any([await asyncio.to_thread(outbox.pending, 1) for outbox in self._outboxes]):
            await asyncio.sleep(0.05)

    async def _ship_forever(self) -> None:
        backoff = 0.1
        while True:
            shipped = False
            try:
                for outbox in self._outboxes:
                    shipped = await self._ship_pending(outbox) or shipped
            except grpc.aio.AioRpcError as error:
                logger.warning("audit events wait in the outbox: compliance answered %s (%s); retrying in %.1f s",
                               error.code().name, error.details(), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.1
            if not shipped:
                self._recorded.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recorded.wait(), timeout=1.0)

    async def _ship_pending(self, outbox: AuditOutbox) -> bool:
        """Ship the oldest batch waiting in `outbox`; False if nothing was waiting."""
        events = [item if isinstance(item, TracedEvent) else TracedEvent(item)
                  for item in await asyncio.to_thread(outbox.pending, self._batch_size)]
        if events:
            await self._ship(outbox, events)
        return bool(events)

    async def _ship(self, outbox: AuditOutbox, events: list[TracedEvent]) -> None:
        try:
            await self._append_linked(events)
        except grpc.aio.AioRpcError as error:
            if error.code() not in _REFUSED_FOR_GOOD:
                raise
            if len(events) == 1:
                refused = events[0].event
                logger.error("compliance refused audit event %s for good: %s", refused.event_id, error.details())
                await asyncio.to_thread(outbox.reject, refused, f"{error.code().name}: {error.details()}")
                return
            for event in events:  # find the event at fault; the others go through
                await self._ship(outbox, [event])
            return
        await asyncio.to_thread(outbox.acknowledge, [traced.event.event_id for traced in events])

    async def _append_linked(self, events: list[TracedEvent]) -> None:
        """AppendEvents in a span of the originating traces (see the module docstring)."""
        if self._telemetry is None:
            await self._append([traced.event for traced in events])
            return
        with span_linked_to(self._telemetry.tracer, "audit.ship", [traced.trace_context for traced in events]):
            await self._append([traced.event for traced in events])


"""SERVER spans for the kit's call pipeline, at a fraction of the SDK's per-span cost.

Every call gets a span, so its cost is paid on every request. The SDK's `Tracer` builds a
`Span` with a lock, bounded attribute and event containers, a sampler chain and a
processor fan-out, about 20 us here, a tenth of a small RPC. A server span needs none of
that while it is open: its attributes are a handful of strings known per method. This
module decides sampling itself (parent-based, then trace-id ratio, exactly the SDK's
rule), keeps the open span in a slotted object, and only when it ends builds the SDK's
`ReadableSpan` for the provider's span processor, so export (OTLP or JSON lines) is the
one SDK pipeline. Spans a handler starts inside the call (clients, storage, Ray) come
from the SDK tracer as children of this one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_TRACE_ID_LIMIT = (1 << 64) - 1


class ServerSpans:
    """Starts SERVER spans for one service; finished ones go to `processor`."""

    def __init__(self, *, processor: SpanProcessor | None, resource: Resource, scope: InstrumentationScope,
                 sample_ratio: float) -> None:
        self._processor = processor
        self._resource = resource
        self._scope = scope
        # The SDK's TraceIdRatioBased rule: sample when the low 64 bits fall under the bound.
        self._bound = round(sample_ratio * (_TRACE_ID_LIMIT + 1)) if processor is not None else 0

    def start(self, name: str, parent: otel_context.Context | None, attributes: Mapping[str, Any]) -> trace.Span:
        parent_context = trace.get_current_span(parent).get_span_context() if parent is not None else None
        span_id = random.getrandbits(64)
        if parent_context is not None and parent_context.is_valid:
            trace_id = parent_context.trace_id
            sampled = parent_context.trace_flags.sampled
        else:
            parent_context = None
            trace_id = random.getrandbits(128)
            sampled = (trace_id & _TRACE_ID_LIMIT) < self._bound
        if not sampled or self._processor is None:
            return NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=_NOT_SAMPLED))
        context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
        return _RecordingServerSpan(self, name, context, parent_context, dict(attributes))

    def finish(self, span: _RecordingServerSpan, end_ns: int) -> None:
        assert self._processor is not None
        self._processor.on_end(
            ReadableSpan(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=self._resource,
                attributes=span.attributes,
                kind=SpanKind.SERVER,
                status=span.status,
                start_time=span.start_ns,
                end_time=end_ns,
                instrumentation_scope=self._scope,
            )
        )


class _RecordingServerSpan(trace.Span):
    __slots__ = ("_owner", "name", "context", "parent", "attributes", "status", "start_ns", "_ended")

    def __init__(self, owner: ServerSpans, name: str, context: SpanContext, parent: SpanContext | None,
                 attributes: dict[str, Any]) -> None:
        self._owner = owner
        self.name = name
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.status = Status(StatusCode.UNSET)
        self.start_ns = time.time_ns()
        self._ended = False

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.attributes.update(attributes)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.status = status if isinstance(status, Status) else Status(status, description)

    def update_name(self, name: str) -> None:
        self.name = name

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        # Kept as attributes rather than span events: one error per server span is enough.
        self.attributes["exception.type"] = type(exception).__qualname__
        self.attributes["exception.message"] = str(exception)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        return None

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        return None

    def end(self, end_time: int | None = None) -> None:
        if not self._ended:
            self._ended = True
            self._owner.finish(self, end_time or time.time_ns())


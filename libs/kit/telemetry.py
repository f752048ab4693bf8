"""OpenTelemetry for Limelight: one tracer provider per service, lean export, log correlation.

Each service gets its own `TracerProvider` (with a `service.name` resource) instead of the
process-global one, so several services can share a test process and still report as
themselves. Context propagation is the global W3C trace-context propagator, so a trace
crosses services (gRPC metadata) and Ray tasks (a carrier dict in the task arguments).

Spans go to OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, otherwise to JSON lines under
`<data dir>/traces/`, one file per process, so a trace can be read offline. Head sampling
is `LIMELIGHT_TRACE_SAMPLE_RATIO` (default 1.0), parent-based so a trace is kept or dropped
whole; `LIMELIGHT_TRACING=off` turns tracing off.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from libs.kit.server_spans import ServerSpans
from libs.storage.paths import data_dir

_propagator = TraceContextTextMapPropagator()
_getter = DefaultGetter()


class JsonLinesSpanExporter(SpanExporter):
    """Writes one compact JSON object per span.

    `ReadableSpan.to_json()` pretty-prints a large dict and costs more than the span; on a
    2-core machine the exporter thread competes with the server for the GIL, so only the
    fields a reader needs are written.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in shutdown()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.context
            parent = span.parent
            parent_id = f'"{parent.span_id:016x}"' if parent else "null"
            attributes = json.dumps(dict(span.attributes or {}), separators=(",", ":"), default=str)
            lines.append(
                f'{{"service":{json.dumps(span.resource.attributes.get("service.name", ""))},'
                f'"name":{json.dumps(span.name)},"kind":"{span.kind.name}",'
                f'"trace_id":"{context.trace_id:032x}","span_id":"{context.span_id:016x}",'
                f'"parent_span_id":{parent_id},"start_ns":{span.start_time or 0},"end_ns":{span.end_time or 0},'
                f'"status":"{span.status.status_code.name}","attributes":{attributes}}}'
            )
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass
class Telemetry:
    """A service's tracers and the provider behind them (flushed and closed by `shutdown`).

    `server_spans` starts the kit's per-call SERVER spans cheaply; `tracer` is the SDK
    tracer for every other span (clients, storage, Ray tasks).
    """

    service: str
    provider: TracerProvider
    tracer: trace.Tracer
    server_spans: ServerSpans

    def shutdown(self) -> None:
        self.provider.shutdown()


def traces_dir(root: Path | None = None) -> Path:
    return (root or data_dir()) / "traces"


def configure_telemetry(
    service: str, *, data_root: Path | None = None, sample_ratio: float | None = None
) -> Telemetry:
    """Build the tracer provider for `service` from the environment (see module docstring)."""
    if sample_ratio is None:
        sample_ratio = float(os.environ.get("LIMELIGHT_TRACE_SAMPLE_RATIO", "1.0"))
    tracing_off = os.environ.get("LIMELIGHT_TRACING", "on").lower() in {"off", "0", "false"}
    sampler = ALWAYS_OFF if tracing_off else ParentBased(TraceIdRatioBased(sample_ratio))
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"limelight-{service}", "service.namespace": "limelight"}),
        sampler=sampler,
    )
    processor = None if tracing_off else BatchSpanProcessor(exporter_for(service, data_root))
    if processor is not None:
        provider.add_span_processor(processor)
    scope_name = f"limelight.{service}"
    return Telemetry(
        service=service,
        provider=provider,
        tracer=provider.get_tracer(scope_name),
        server_spans=ServerSpans(
            processor=processor,
            resource=provider.resource,
            scope=InstrumentationScope(scope_name),
            sample_ratio=sample_ratio,
        ),
    )


def exporter_for(service: str, data_root: Path | None) -> SpanExporter:
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return JsonLinesSpanExporter(traces_dir(data_root) / f"{service}-{os.getpid()}.jsonl")


def read_spans(root: Path | None = None) -> list[dict[str, object]]:
    """Every span exported as JSON lines under the data directory, in file order."""
    spans: list[dict[str, object]] = []
    for path in sorted(traces_dir(root).glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            spans.extend(json.loads(line) for line in handle if line.strip())
    return spans


def inject_carrier(context: otel_context.Context | None = None) -> dict[str, str]:
    """The trace context (default: the current one) as a plain dict, for metadata or a Ray task."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    return carrier


def extract_carrier(carrier: Mapping[str, str]) -> otel_context.Context:
    """The context a carrier from `inject_carrier` describes; use it as a span's parent."""
    return _propagator.extract(carrier, getter=_getter)


@dataclass(frozen=True)
class _Ids:
    trace_id: str
    span_id: str


def current_ids() -> _Ids:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return _Ids("", "")
    return _Ids(format(span_context.trace_id, "032x"), format(span_context.span_id, "016x"))


class TraceIdsLogFilter(logging.Filter):
    """Adds `trace_id` and `span_id` of the active span to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_ids()
        record.trace_id = ids.trace_id or "-"
        record.span_id = ids.span_id or "-"
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s trace=%(trace_id)s span=%(span_id)s %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with trace and span ids on each line (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(f, TraceIdsLogFilter) for handler in root.handlers for f in handler.filters):
        return
    handler = logging.StreamHandler()
    handler.addFilter(TraceIdsLogFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)



@contextmanager
def span_linked_to(tracer: trace.Tracer, name: str, carriers: Sequence[Mapping[str, str]]) -> Iterator[None]:
    """A current span for work done later on behalf of earlier calls (a batch a background task ships).

    It is a child of the first carrier's span, so that call's trace shows the work, and it
    links to every carrier's span, so each originating trace leads to it; with no traced
    carrier it starts a trace of its own.
    """
    origins = list({context.span_id: context for context in (
        trace.get_current_span(extract_carrier(carrier)).get_span_context() for carrier in carriers)
        if context.is_valid}.values())
    parent = trace.set_span_in_context(trace.NonRecordingSpan(origins[0])) if origins else otel_context.Context()
    with tracer.start_as_current_span(name, context=parent, links=[trace.Link(origin) for origin in origins]):
        yield

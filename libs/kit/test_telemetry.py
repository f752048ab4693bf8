from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from libs.kit.telemetry import (
    LOG_FORMAT,
    JsonLinesSpanExporter,
    TraceIdsLogFilter,
    configure_telemetry,
    exporter_for,
    extract_carrier,
    inject_carrier,
    read_spans,
)


def test_log_lines_carry_the_active_trace_and_span(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    telemetry = configure_telemetry("logtest", data_root=tmp_path)
    caplog.handler.addFilter(TraceIdsLogFilter())
    caplog.handler.setFormatter(logging.Formatter(LOG_FORMAT))
    with telemetry.tracer.start_as_current_span("work") as span:
        logging.getLogger("limelight.test").warning("inside")
    logging.getLogger("limelight.test").warning("outside")
    inside, outside = caplog.text.splitlines()
    ids = span.get_span_context()
    assert f"trace={ids.trace_id:032x} span={ids.span_id:016x}" in inside
    assert "trace=- span=-" in outside
    telemetry.shutdown()


def test_spans_go_to_otlp_only_when_an_endpoint_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert isinstance(exporter_for("svc", tmp_path), JsonLinesSpanExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert isinstance(exporter_for("svc", tmp_path), OTLPSpanExporter)


def test_a_carrier_continues_the_trace_in_another_process_shape(tmp_path: Path) -> None:
    producer = configure_telemetry("producer", data_root=tmp_path)
    consumer = configure_telemetry("consumer", data_root=tmp_path)
    with producer.tracer.start_as_current_span("submit") as parent:
        carrier = inject_carrier()
    with consumer.tracer.start_as_current_span("task", context=extract_carrier(carrier)):
        pass
    producer.shutdown()
    consumer.shutdown()
    spans = {span["name"]: span for span in read_spans(tmp_path)}
    assert spans["task"]["trace_id"] == f"{parent.get_span_context().trace_id:032x}"
    assert spans["task"]["parent_span_id"] == spans["submit"]["span_id"]
    assert spans["task"]["service"] == "limelight-consumer"


def test_tracing_off_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMELIGHT_TRACING", "off")
    telemetry = configure_telemetry("quiet", data_root=tmp_path)
    with telemetry.tracer.start_as_current_span("work") as span:
        assert not span.is_recording()
    telemetry.shutdown()
    assert read_spans(tmp_path) == []
    assert trace.get_current_span() is trace.INVALID_SPAN


@pytest.mark.parametrize(
    ("ratio", "parent_sampled", "recorded"),
    [(1.0, None, True), (0.0, None, False), (0.0, True, True), (1.0, False, False)],
)
def test_server_spans_follow_the_parent_then_the_ratio(
    tmp_path: Path, ratio: float, parent_sampled: bool | None, recorded: bool
) -> None:
    telemetry = configure_telemetry("sampling", data_root=tmp_path, sample_ratio=ratio)
    parent = None
    if parent_sampled is not None:
        flags = "01" if parent_sampled else "00"
        parent = extract_carrier({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-{flags}"})
    span = telemetry.server_spans.start("/pkg.Service/Method", parent, {"rpc.system": "grpc"})
    assert span.is_recording() is recorded
    if parent is not None:
        assert span.get_span_context().trace_id == int("ab" * 16, 16)
    span.end()
    telemetry.shutdown()
    exported = read_spans(tmp_path)
    assert len(exported) == (1 if recorded else 0)
    if recorded and parent is not None:
        assert exported[0]["parent_span_id"] == "cd" * 8
        assert exported[0]["kind"] == "SERVER" and exported[0]["attributes"] == {"rpc.system": "grpc"}

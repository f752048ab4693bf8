"""The use cases' `Tracing` port over the kit's telemetry (the only place that knows OpenTelemetry)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager

from libs.kit.telemetry import continued_trace, current_ids, inject_carrier


class KitTracing:
    def carrier(self) -> dict[str, str]:
        return inject_carrier()

    def continued(self, carrier: Mapping[str, str]) -> AbstractContextManager[None]:
        return continued_trace(carrier)

    def trace_id(self) -> str:
        return current_ids().trace_id

"""The domain and the use cases stay free of transports, databases, Ray and tracing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

FORBIDDEN = ("grpc", "sqlite3", "_sqlite3", "ray", "opentelemetry", "services.ingest.store",
             "services.ingest.workers", "services.ingest.clients")


CORE = ["services.ingest.model", "services.ingest.uploads", "services.ingest.usecases",
        *(f"services.ingest.usecases.{room}" for room in ("ports", "audit_events", "uploading", "processing", "reading"))]


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_adapter_even_indirectly(module: str) -> None:
    # A fresh interpreter: this test process has long imported everything.
    probe = (f"import sys, {module}\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} or m in {FORBIDDEN!r}))")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env=environment).stdout
    assert loaded.strip() == "[]"

"""The cache is tested against a real compliance server: consent's own fixtures start it."""

from __future__ import annotations

from services.compliance.consent.conftest import callers, compliance, consent_stub

__all__ = ["callers", "compliance", "consent_stub"]

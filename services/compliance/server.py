"""Compliance: the audit trail, consent, disclosure rules, AI labels and data-subject requests.

The contract is in protos/limelight/compliance/v1/. RPCs not built yet answer UNIMPLEMENTED.
"""

from __future__ import annotations

from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return package_definition("limelight.compliance.v1")

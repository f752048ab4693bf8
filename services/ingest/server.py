"""Ingest: uploads, probing, transcoding on Ray, video records.

The contract is in protos/limelight/ingest/v1/. RPCs not built yet answer UNIMPLEMENTED.
"""

from __future__ import annotations

from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return package_definition("limelight.ingest.v1")

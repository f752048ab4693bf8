"""Affiliate: tracking links, clicks, attribution and commissions.

The contract is in protos/limelight/affiliate/v1/. No RPC is built yet, so the server exposes
the whole contract and every call answers UNIMPLEMENTED.
"""

from __future__ import annotations

from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return package_definition("limelight.affiliate.v1")

"""Ranking: the For-You feed, engagement signals, candidate index and explanations.

The contract is in protos/limelight/ranking/v1/. No RPC is built yet, so the server exposes
the whole contract and every call answers UNIMPLEMENTED.
"""

from __future__ import annotations

from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return package_definition("limelight.ranking.v1")

"""Gifts: LIVE sessions, coin wallets, gifts, the ledger and payouts.

The contract is in protos/limelight/gifts/v1/. RPCs not built yet answer UNIMPLEMENTED.
"""

from __future__ import annotations

from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    return package_definition("limelight.gifts.v1")

"""Both areas in one compliance package, wired as docs/compliance-engine.md tells the server to."""

from __future__ import annotations

from pathlib import Path

import grpc
from limelight.compliance.v1 import ads_pb2, ads_pb2_grpc, disclosure_pb2, disclosure_pb2_grpc

from libs.kit.access import AccessPolicy
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition, start_service
from services.compliance.ads import servicer as ads
from services.compliance.disclosure import servicer as disclosure


def build_both(runtime: ServiceRuntime) -> ServiceDefinition:
    disclosure_area, ads_area = disclosure.build(runtime), ads.build(runtime)
    return package_definition(
        "limelight.compliance.v1",
        {disclosure_area.service_name: disclosure_area.servicer, ads_area.service_name: ads_area.servicer},
        policy=AccessPolicy(public=disclosure_area.policy.public | ads_area.policy.public,
                            roles={**disclosure_area.policy.roles, **ads_area.policy.roles}),
        on_start=ads_area.on_start, on_stop=ads_area.on_stop)


async def test_both_areas_serve_from_one_server_with_their_public_methods_open(tmp_path: Path) -> None:
    running = await start_service("compliance", build_both, port=0, data_root=tmp_path)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            rules = await disclosure_pb2_grpc.DisclosureServiceStub(channel).ListDisclosureRules(
                disclosure_pb2.ListDisclosureRulesRequest())
            found = await ads_pb2_grpc.AdRepositoryServiceStub(channel).SearchAds(ads_pb2.SearchAdsRequest())
        assert rules.rules and list(found.ads) == []
        assert (tmp_path / "compliance" / "ads.db").exists()
    finally:
        await running.stop(grace=0)

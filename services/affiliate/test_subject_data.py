"""Export and erasure of what affiliate holds about a visitor, on the real servers."""

from __future__ import annotations

import json

import grpc
from limelight.privacy.v1 import subject_data_pb2, subject_data_pb2_grpc

from libs.auth.principal import Role
from services.affiliate.conftest import Affiliate, fresh
from services.affiliate.usecases import subject_data


async def test_a_visitors_export_shows_their_clicks_and_erasure_blanks_their_identifiers(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    program = await affiliate.program(merchant)
    link = await affiliate.link(fresh("c"), program)
    buyer = fresh("u")
    await affiliate.grant_tracking(buyer)
    click = await affiliate.click(link.token, user=buyer)
    await affiliate.order(buyer, merchant, click.visitor_id, [("shoe", 100)])
    backend = affiliate.service.backend
    user = f"users/{buyer}"
    exported = await subject_data.export(backend.store, backend.personal, user)
    assert [(c["country"], c["visitor_id"], c["counted"]) for c in exported["clicks"]] == [("DE", click.visitor_id, True)]
    assert exported["orders"][0]["attributed"] is True
    erasure = await subject_data.erase(backend.store, backend.call_audit(), user)
    assert "1 clicks" in erasure.summary and any("§ 257 HGB" in kept.legal_basis for kept in erasure.kept)
    after = await subject_data.export(backend.store, backend.personal, user)
    assert [(c["country"], c["visitor_id"], c["visitor_pseudonym"]) for c in after["clicks"]] == [("", "", "")]
    assert after["orders"][0]["visitor_id"] == ""


async def test_compliance_reaches_affiliates_part_through_the_shared_subject_data_service(affiliate: Affiliate) -> None:
    merchant = fresh("m")
    link = await affiliate.link(fresh("c"), await affiliate.program(merchant))
    buyer = fresh("u")
    await affiliate.grant_tracking(buyer)
    await affiliate.click(link.token, user=buyer)
    async with grpc.aio.insecure_channel(affiliate.running.target) as channel:
        stub = subject_data_pb2_grpc.SubjectDataServiceStub(channel)
        service = affiliate.bearer("services/compliance", Role.SERVICE)
        exported = await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(subject=f"users/{buyer}"),
                                                metadata=service)
        assert exported.export.service == "services/affiliate"
        assert [c["country"] for c in json.loads(exported.export.json)["clicks"]] == ["DE"]
        erased = await stub.EraseSubjectData(subject_data_pb2.EraseSubjectDataRequest(subject=f"users/{buyer}"),
                                             metadata=service)
        assert {kept.legal_basis for kept in erased.erasure.retained} >= {
            "§ 257 HGB / § 147 AO: commercial and tax records, 10 years"}
        described = await stub.DescribeProcessing(subject_data_pb2.DescribeProcessingRequest(), metadata=service)
        assert {a.activity_id for a in described.activities} == {"affiliate.click_tracking", "affiliate.commissions"}

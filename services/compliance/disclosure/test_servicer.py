"""DisclosureService end to end: a real server on a loopback port, called through the generated stubs."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from limelight.compliance.v1 import disclosure_pb2, disclosure_pb2_grpc

from libs.auth.principal import Role
from services.compliance.disclosure.cases import DisclosureCase, load_cases
from services.compliance.disclosure.conftest import bearer
from services.compliance.disclosure.messages import enum_out

Metadata = tuple[tuple[str, str]]
CASES = load_cases()


def request_for(case: DisclosureCase) -> disclosure_pb2.EvaluateDisclosureRequest:
    content = case.content
    return disclosure_pb2.EvaluateDisclosureRequest(
        market=enum_out(disclosure_pb2.Market, "MARKET_", case.market),
        content=disclosure_pb2.DisclosureContent(
            content=content.content, caption=content.caption, hashtags=content.hashtags,
            declaration=disclosure_pb2.CommercialDeclaration(
                relationship=enum_out(disclosure_pb2.CommercialRelationship, "COMMERCIAL_RELATIONSHIP_",
                                      content.declaration.relationship),
                brand_name=content.declaration.brand_name),
            product_tags=content.product_tags, affiliate_links=content.affiliate_links,
            label_text=content.label_text,
            label_placement=enum_out(disclosure_pb2.LabelPlacement, "LABEL_PLACEMENT_", content.label_placement)))


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return {v.field: v.description for v in bad_request.field_violations}
    return {}


async def test_every_case_of_the_table_gets_its_verdict_through_the_service(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata
) -> None:
    wrong = []
    for case in CASES:
        response = await disclosure_stub.EvaluateDisclosure(request_for(case), metadata=as_ingest)
        verdict = disclosure_pb2.DisclosureVerdict.Name(response.verdict).removeprefix("DISCLOSURE_VERDICT_")
        if verdict != case.verdict.value or response.is_advertising != case.advertising:
            wrong.append((case.case_id, verdict, case.reason))
        assert response.rules_version == "2026.1"
    assert wrong == []


async def test_a_paid_partnership_with_werbung_first_is_compliant_and_carries_its_label(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata
) -> None:
    case = next(case for case in CASES if case.case_id == "de-paid-werbung-first")
    response = await disclosure_stub.EvaluateDisclosure(request_for(case), metadata=as_ingest)
    assert response.verdict == disclosure_pb2.DISCLOSURE_VERDICT_COMPLIANT
    assert (response.required_label, response.required_placement) == (
        "Werbung", disclosure_pb2.LABEL_PLACEMENT_BEFORE_CONTENT)


async def test_an_undeclared_discount_code_is_non_compliant_with_a_german_finding_and_its_evidence(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata
) -> None:
    case = next(case for case in CASES if case.case_id == "de-undeclared-discount-code")
    response = await disclosure_stub.EvaluateDisclosure(request_for(case), metadata=as_ingest)
    assert response.verdict == disclosure_pb2.DISCLOSURE_VERDICT_NON_COMPLIANT
    first = response.findings[0]
    assert first.severity == disclosure_pb2.FINDING_SEVERITY_VIOLATION
    undeclared = next(f for f in response.findings if f.rule_id == "UNDECLARED_ADVERTISING")
    assert "ADA20" in undeclared.evidence and "Werbung" in undeclared.message and "Du hast" in undeclared.message
    assert "UWG" in undeclared.legal_reference


async def test_contradictory_declaration_is_invalid_argument_naming_both_fields(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata
) -> None:
    request = request_for(CASES[0])
    request.content.declaration.relationship = disclosure_pb2.COMMERCIAL_RELATIONSHIP_NONE
    request.content.declaration.brand_name = "Glowlab"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await disclosure_stub.EvaluateDisclosure(request, metadata=as_ingest)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert {"content.declaration.relationship", "content.declaration.brand_name"} <= set(violations(raised.value))


async def test_a_placement_without_a_label_is_invalid_argument_naming_both_fields(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata
) -> None:
    request = request_for(CASES[0])
    request.content.label_placement = disclosure_pb2.LABEL_PLACEMENT_BEFORE_CONTENT
    request.content.label_text = ""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await disclosure_stub.EvaluateDisclosure(request, metadata=as_ingest)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert {"content.label_placement", "content.label_text"} <= set(violations(raised.value))


async def test_a_missing_market_is_refused_by_the_proto_rules(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, as_ingest: Metadata
) -> None:
    request = request_for(CASES[0])
    request.market = disclosure_pb2.MARKET_UNSPECIFIED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await disclosure_stub.EvaluateDisclosure(request, metadata=as_ingest)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "market" in violations(raised.value)


async def test_a_viewer_may_not_ask_for_verdicts(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub, tmp_path: Path
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await disclosure_stub.EvaluateDisclosure(request_for(CASES[0]),
                                                 metadata=bearer(tmp_path, "users/alice", Role.VIEWER))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_the_rules_are_public_paged_per_market_and_versioned(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub
) -> None:
    seen: list[disclosure_pb2.DisclosureRule] = []
    token = ""
    while True:
        page = await disclosure_stub.ListDisclosureRules(disclosure_pb2.ListDisclosureRulesRequest(
            market=disclosure_pb2.MARKET_GERMANY, page_size=5, page_token=token))
        assert page.rules_version == "2026.1" and len(page.rules) <= 5
        seen += page.rules
        token = page.next_page_token
        if not token:
            break
    ids = [rule.rule_id for rule in seen]
    assert ids == sorted(set(ids)) and "DE_LABEL_BEFORE_CONTENT" in ids and "US_LABEL_CLEAR_AND_CONSPICUOUS" not in ids
    celle = next(rule for rule in seen if rule.rule_id == "DE_LABEL_BEFORE_CONTENT")
    assert "OLG Celle 13 U 53/17" in celle.legal_reference and celle.version == 1
    everything = await disclosure_stub.ListDisclosureRules(disclosure_pb2.ListDisclosureRulesRequest(
        rules_version="2026.1", page_size=1000))
    assert len(everything.rules) > len(seen) and not everything.next_page_token


async def test_unknown_rule_versions_and_foreign_page_tokens_are_refused(
    disclosure_stub: disclosure_pb2_grpc.DisclosureServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await disclosure_stub.ListDisclosureRules(disclosure_pb2.ListDisclosureRulesRequest(rules_version="1999.1"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    page = await disclosure_stub.ListDisclosureRules(disclosure_pb2.ListDisclosureRulesRequest(
        market=disclosure_pb2.MARKET_GERMANY, page_size=2))
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await disclosure_stub.ListDisclosureRules(disclosure_pb2.ListDisclosureRulesRequest(
            market=disclosure_pb2.MARKET_UNITED_STATES, page_size=2, page_token=page.next_page_token))
    assert foreign.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(foreign.value)

"""Content that carries a tracking link goes to compliance's disclosure engine with the link."""

from __future__ import annotations

import grpc
import pytest
from limelight.affiliate.v1 import links_pb2
from limelight.compliance.v1 import disclosure_pb2

from services.affiliate.conftest import Affiliate, fresh


async def test_content_with_a_link_is_advertising_and_needs_the_label(affiliate: Affiliate) -> None:
    creator = fresh("c")
    link = await affiliate.link(creator, await affiliate.program(fresh("m")))
    unlabelled = await affiliate.links.ReviewLinkDisclosure(links_pb2.ReviewLinkDisclosureRequest(
        tracking_link=link.name, content=f"creators/{creator}/videos/v1", caption="my favourite shoes",
        brand_name="Shoe GmbH"), metadata=affiliate.creator(creator))
    assert unlabelled.disclosure.is_advertising
    assert unlabelled.disclosure.verdict != disclosure_pb2.DISCLOSURE_VERDICT_COMPLIANT
    assert unlabelled.disclosure.required_label
    labelled = await affiliate.links.ReviewLinkDisclosure(links_pb2.ReviewLinkDisclosureRequest(
        tracking_link=link.name, content=f"creators/{creator}/videos/v1", caption="my favourite shoes",
        brand_name="Shoe GmbH", label_text=unlabelled.disclosure.required_label,
        label_placement=disclosure_pb2.LABEL_PLACEMENT_BEFORE_CONTENT), metadata=affiliate.creator(creator))
    assert labelled.disclosure.verdict == disclosure_pb2.DISCLOSURE_VERDICT_COMPLIANT


async def test_only_the_links_creator_may_submit_content_with_it(affiliate: Affiliate) -> None:
    creator, other = fresh("c"), fresh("c")
    link = await affiliate.link(creator, await affiliate.program(fresh("m")))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await affiliate.links.ReviewLinkDisclosure(links_pb2.ReviewLinkDisclosureRequest(
            tracking_link=link.name, content=f"creators/{other}/videos/v1", brand_name="B"),
            metadata=affiliate.creator(other))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

"""What ingest tells ranking and the ad repository about a published video."""

from __future__ import annotations

import dataclasses
import uuid

from limelight.compliance.v1 import ads_pb2

from services.ingest import messages
from services.ingest.model import (
    AiLabel,
    CommercialDeclaration,
    CommercialRelationship,
    ComplianceReview,
    DisclosureVerdict,
    VideoMetadata,
)
from services.ingest.test_model import DRAFT, T0

LABELLED = dataclasses.replace(
    DRAFT, published_at=T0, ad_name="ads/a1",
    metadata=VideoMetadata(caption="Werbung | Neue Sneaker", commercial=CommercialDeclaration(
        CommercialRelationship.PAID_PARTNERSHIP, "Acme", "Acme GmbH")),
    review=ComplianceReview(DisclosureVerdict.LABEL_REQUIRED, "Werbung", AiLabel.AI_EDITED, is_advertising=True,
                            required_placement="BEFORE_CONTENT", ai_label_text="KI-bearbeitet"))


def test_the_labels_go_to_ranking_and_onto_the_video() -> None:
    assert list(messages.registration_request(LABELLED).labels) == ["Werbung", "KI-bearbeitet"]
    video = messages.video_out(LABELLED, "http://127.0.0.1:1")
    assert list(video.labels) == ["Werbung", "KI-bearbeitet"] and video.ad == "ads/a1"
    assert video.compliance_review.required_placement == 2  # LABEL_PLACEMENT_BEFORE_CONTENT
    assert video.publication_note.startswith("published with the labels 'Werbung', 'KI-bearbeitet'")


def test_the_ad_repository_entry_names_content_advertiser_payer_and_creator() -> None:
    request = messages.ad_request(LABELLED)
    assert request.request_id == str(uuid.uuid5(uuid.NAMESPACE_URL, "creators/alice/videos/v1"))
    assert request.request_id == messages.ad_request(LABELLED).request_id  # a retry is the same registration
    ad = request.ad
    assert (ad.kind, ad.content, ad.summary, ad.advertiser, ad.payer, ad.brand, ad.creator, ad.found_by_engine) == (
        ads_pb2.AD_KIND_COMMERCIAL_CONTENT, "creators/alice/videos/v1", "Werbung | Neue Sneaker", "Acme",
        "Acme GmbH", "Acme", "creators/alice", False)
    found = dataclasses.replace(LABELLED, metadata=VideoMetadata(caption="Code ADA20",
                                                                 affiliate_links=("https://amzn.to/x",)))
    ad = messages.ad_request(found).ad
    assert (ad.kind, ad.advertiser, ad.found_by_engine) == (ads_pb2.AD_KIND_AFFILIATE, "creators/alice", True)
